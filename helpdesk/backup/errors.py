"""The one error the backup commands raise for an operator to read (no stack trace)."""

from __future__ import annotations


class BackupError(Exception):
    """A backup cannot be made, verified or restored; the message says why (never PHI)."""
