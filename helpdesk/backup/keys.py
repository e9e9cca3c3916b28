"""The backup key: from settings, refused when missing in production, never a KEK."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from helpdesk.backup.errors import BackupError
from helpdesk.crypto import DataKey
from helpdesk.settings import Settings


def backup_key(settings: Settings) -> DataKey:
    """The key that seals backups, with a stable id derived from it (not a secret)."""
    if settings.backup_key is None:
        raise BackupError(
            "HELPDESK_BACKUP_KEY is not set (base64 of 32 bytes; keep it in the secret store, "
            "apart from the KEK; development generates one only beside its other secrets)"
        )
    material = settings.secret_bytes("backup_key")
    return DataKey(key_id=key_id_of(material), material=material)


def key_id_of(material: bytes) -> uuid.UUID:
    """A fingerprint naming the key in each backup, so a wrong key is told apart from
    tampering."""
    digest = hmac.new(material, b"helpdesk-backup-key-id", hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16])
