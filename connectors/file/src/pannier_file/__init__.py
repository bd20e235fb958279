"""Pannier's file connectors."""
