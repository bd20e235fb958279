"""Pannier's database connectors: "Database Reader" and "Database Writer"."""
