"""Pannier's data model: statuses, content types, channels, messages."""
