"""Incident-response commands (docs/incident-response.md): revoke every session, export the
audit trail of one account. Both audit what they do."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from sqlalchemy import select

from helpdesk.runtime import Runtime
from helpdesk.services import sessions, users
from models.audit import AuditLog
from models.user import AuthSession

SYSTEM_ROLE = "SYSTEM"
PAGE = 1000


async def revoke_all_sessions(runtime: Runtime, user_id: uuid.UUID | None = None) -> int:
    """End every live session (of one user, or of everyone): each access token stops working
    on its next use, refresh tokens are refused, the API disconnects their sockets."""
    async with runtime.database.transaction() as session:
        if user_id is not None:
            ended = await sessions.revoke_all_for_user(session, runtime, user_id, "incident")
        else:
            live = await session.scalars(
                select(AuthSession).where(AuthSession.revoked_at.is_(None))
            )
            ended = 0
            for auth_session in list(live):
                await sessions.revoke(session, runtime, auth_session, "incident")
                ended += 1
        await runtime.audit.record(
            session,
            "incident.sessions_revoked",
            actor_role=SYSTEM_ROLE,
            details={"sessions": ended, "user_id": str(user_id) if user_id else "all"},
        )
    return ended


async def export_audit_trail(
    runtime: Runtime, user_id: uuid.UUID, write: Callable[[str], object]
) -> int:
    """Every audit row by or about `user_id`, oldest first, one JSON object per line (the
    rows hold no PHI: actions, ids, IPs, outcomes), read in pages by sequence number."""
    count, after = 0, 0
    while True:
        async with runtime.database.read() as session:
            rows = list(
                await session.scalars(
                    select(AuditLog)
                    .where(users.audit_filter(user_id), AuditLog.seq > after)
                    .order_by(AuditLog.seq)
                    .limit(PAGE)
                )
            )
        if not rows:
            break
        for row in rows:
            write(_line(row) + "\n")
        count += len(rows)
        after = rows[-1].seq
    async with runtime.database.transaction() as session:
        await runtime.audit.record(
            session,
            "incident.audit_exported",
            actor_role=SYSTEM_ROLE,
            table="users",
            record_id=user_id,
            details={"rows": count},
        )
    return count


_FIELDS = (
    "seq",
    "at",
    "actor_id",
    "actor_role",
    "action",
    "table_name",
    "record_id",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "details",
)


def _line(row: AuditLog) -> str:
    return json.dumps({name: getattr(row, name) for name in _FIELDS}, default=str, sort_keys=True)
