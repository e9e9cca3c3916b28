"""Shared infrastructure of the help desk: settings, database, crypto, audit, services."""
