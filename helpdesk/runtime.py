"""The long-lived objects a process builds once from its settings and passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helpdesk.audit import AuditTrail
from helpdesk.crypto import BlindIndex, KeyRing
from helpdesk.db import Database
from helpdesk.keystore import KeyStore
from helpdesk.settings import Settings


@dataclass
class Runtime:
    """Settings plus what is built from them: database, keys, audit trail, mail backend.

    The API keeps one on ``app.state.runtime``; the worker hands it to the activity classes.
    """

    settings: Settings
    database: Database
    keys: KeyStore
    blind_index: BlindIndex
    audit: AuditTrail
    email: Any = None  # helpdesk.email.EmailBackend, set by build_runtime
    temporal: Any = None  # temporalio.client.Client once connected
    extras: dict[str, Any] = field(default_factory=dict)

    async def close(self) -> None:
        await self.database.dispose()
        await self.keys.keyring.aclose()


def build_keyring(settings: Settings) -> KeyRing:
    """The local KEK ring (default) or the Azure Key Vault one (HELPDESK_KEK_PROVIDER)."""
    if settings.kek_provider == "azure-keyvault":
        from helpdesk.keyvault import keyring_from_settings

        return keyring_from_settings(settings)
    return KeyRing(settings.kek_id, settings.key_encryption_keys())


def build_runtime(settings: Settings) -> Runtime:
    from helpdesk import metrics
    from helpdesk.email import build_email_backend

    runtime = Runtime(
        settings=settings,
        database=Database(
            settings.database_url,
            echo=settings.database_echo,
            busy_timeout=settings.database_busy_timeout_seconds,
        ),
        keys=KeyStore(build_keyring(settings)),
        blind_index=BlindIndex(settings.secret_bytes("blind_index_key")),
        audit=AuditTrail(settings.secret_bytes("audit_key")),
        email=build_email_backend(settings),
    )
    metrics.DB_POOLS.watch("main", runtime.database.engine)
    metrics.FRESHNESS.watch(settings)
    return runtime
