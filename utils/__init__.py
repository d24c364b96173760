"""Shared helpers: run configuration, logging, seeding, command-line errors."""
