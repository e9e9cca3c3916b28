"""The long-lived objects a process builds once from its settings and passes around."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from helpdesk import metrics, metrics_freshness
from helpdesk.audit import AuditTrail
from helpdesk.crypto import BlindIndex, KeyRing
from helpdesk.db import Database
from helpdesk.email import build_email_backend
from helpdesk.keystore import KeyStore
from helpdesk.keyvault import keyring_from_settings
from helpdesk.numbers import NumberBlock
from helpdesk.security import AccessTokens, Passwords
from helpdesk.settings import Settings

if TYPE_CHECKING:  # the owners of these objects import this module
    from limits.aio.storage import Storage

    from helpdesk.push import Publisher
    from helpdesk.ratelimit import RequestLimiter, UnknownAccountLockouts
    from helpdesk.scanner import ClamdClient
    from helpdesk.storage.store import AttachmentStore


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
    # Process-wide objects, each built on first use by the module that owns it.
    passwords_: Passwords | None = None  # .passwords
    access_tokens_: AccessTokens | None = None  # .access_tokens
    push: Publisher | None = None  # helpdesk.push.publisher_for, or the API's Socket.IO server
    sockets: Any = None  # api.socketio's server, when this process hosts one
    on_session_revoked: Callable[[uuid.UUID], None] | None = None  # helpdesk.push's hook
    push_pending_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    rate_limiters: dict[str, RequestLimiter] = field(default_factory=dict)
    rate_limit_storage: Storage | None = None
    unknown_account_lockouts: UnknownAccountLockouts | None = None
    attachment_store: AttachmentStore | None = None
    scanner: ClamdClient | None = None
    # How a stored attachment's scan is arranged (default: the scan workflow); tests swap it.
    scan_starter: Callable[[Runtime, uuid.UUID, uuid.UUID], Awaitable[None]] | None = None
    # Admission slots by name (helpdesk.services.ticket_commands).
    admission: dict[str, Any] = field(default_factory=dict)
    # Ticket numbers this process reserved (helpdesk.numbers), built on first use.
    ticket_numbers_: NumberBlock | None = None

    @property
    def passwords(self) -> Passwords:
        if self.passwords_ is None:
            s = self.settings
            self.passwords_ = Passwords(s.argon2_time_cost, s.argon2_memory_cost)
        return self.passwords_

    @passwords.setter
    def passwords(self, value: Passwords) -> None:
        self.passwords_ = value

    @property
    def ticket_numbers(self) -> NumberBlock:
        if self.ticket_numbers_ is None:
            self.ticket_numbers_ = NumberBlock(self.database, self.settings.ticket_number_block)
        return self.ticket_numbers_

    @property
    def access_tokens(self) -> AccessTokens:
        if self.access_tokens_ is None:
            self.access_tokens_ = AccessTokens(self.settings)
        return self.access_tokens_

    async def close(self) -> None:
        await self.database.dispose()
        await self.keys.keyring.aclose()


def build_keyring(settings: Settings) -> KeyRing:
    """The local KEK ring (default) or the Azure Key Vault one (HELPDESK_KEK_PROVIDER)."""
    if settings.kek_provider == "azure-keyvault":
        return keyring_from_settings(settings)
    return KeyRing(settings.kek_id, settings.key_encryption_keys())


def build_runtime(settings: Settings) -> Runtime:
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
    metrics_freshness.FRESHNESS.watch(settings)
    return runtime
