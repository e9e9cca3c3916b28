"""The one audit function every feature calls, and the verifier of the hash chain.

Rows are append-only and chained: ``h_i = HMAC(k, h_{i-1} || canonical(row_i))`` with the
key held outside the database, so editing, inserting or deleting a row is detectable.
Details must never carry PHI values: ids, field names, counts and outcomes only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.context import current_context
from models.audit import AuditLog

if TYPE_CHECKING:
    from helpdesk.db import Database

GENESIS = "0" * 64
Outcome = Literal["success", "failure", "denied"]
# Serialises chain appends across processes on PostgreSQL (SQLite: BEGIN IMMEDIATE does).
_PG_AUDIT_LOCK = 0x4844_4155_4454  # "HDAUDT"


def canonical(row: AuditLog) -> bytes:
    """The bytes of a row that its chain hash covers."""
    body = {
        "seq": row.seq,
        "at": row.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": str(row.actor_id) if row.actor_id else None,
        "actor_role": row.actor_role,
        "action": row.action,
        "table_name": row.table_name,
        "record_id": row.record_id,
        "outcome": row.outcome,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "request_id": row.request_id,
        "details": row.details or {},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


_AUDIT = cast(Table, AuditLog.__table__)
_COLUMNS = tuple(column.key for column in _AUDIT.columns)


def _values(row: AuditLog) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _COLUMNS}


def chain_hash(key: bytes, prev_hash: str, row: AuditLog) -> str:
    return hmac.new(key, prev_hash.encode() + b"|" + canonical(row), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """One audit row to append (`AuditTrail.record_many`); the request context fills in
    who, from where and the request id unless the entry says who."""

    action: str
    outcome: Outcome = "success"
    table: str | None = None
    record_id: uuid.UUID | str | None = None
    details: dict[str, Any] | None = None
    actor_id: uuid.UUID | None = None
    actor_role: str | None = None


class AuditTrail:
    """Appends audit rows in the caller's transaction (they commit or roll back with it)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    async def record(
        self,
        session: AsyncSession,
        action: str,
        *,
        outcome: Outcome = "success",
        table: str | None = None,
        record_id: uuid.UUID | str | None = None,
        details: dict[str, Any] | None = None,
        actor_id: uuid.UUID | None = None,
        actor_role: str | None = None,
    ) -> AuditLog:
        (row,) = await self.record_many(
            session,
            [
                AuditEntry(
                    action,
                    outcome=outcome,
                    table=table,
                    record_id=record_id,
                    details=details,
                    actor_id=actor_id,
                    actor_role=actor_role,
                )
            ],
        )
        return row

    async def record_many(
        self, session: AsyncSession, entries: Sequence[AuditEntry]
    ) -> list[AuditLog]:
        """Append `entries` to the chain, in order, in the caller's transaction: one read of
        the chain head and one INSERT for all of them. The rows are written by a Core
        insert (no unit of work: an audit row is never changed); the objects returned are
        transient, not in the session."""
        if not entries:
            return []
        ctx = current_context()
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
        last = (
            await session.execute(
                select(AuditLog.seq, AuditLog.hash).order_by(AuditLog.seq.desc()).limit(1)
            )
        ).first()
        prev_seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS)
        rows: list[AuditLog] = []
        for entry in entries:
            row = AuditLog(
                seq=prev_seq + 1,
                at=datetime.now(UTC),
                actor_id=entry.actor_id if entry.actor_id is not None else ctx.actor_id,
                actor_role=entry.actor_role if entry.actor_role is not None else ctx.actor_role,
                action=entry.action,
                table_name=entry.table,
                record_id=str(entry.record_id) if entry.record_id is not None else None,
                outcome=entry.outcome,
                ip=ctx.ip,
                user_agent=(ctx.user_agent or None) and ctx.user_agent[:255],
                request_id=ctx.request_id,
                details=entry.details or {},
                prev_hash=prev_hash,
            )
            row.hash = chain_hash(self._key, prev_hash, row)
            rows.append(row)
            prev_seq, prev_hash = row.seq, row.hash
        await session.execute(insert(_AUDIT), [_values(row) for row in rows])
        return rows

    async def record_separately(self, database: Database, action: str, **kwargs: Any) -> None:
        """Audit in a transaction of its own: for failures whose request rolls back.

        It queues for the writer lock like any other transaction (a bare session would
        meet the lock's holder in SQLite's busy handler instead, for the whole busy
        timeout when that holder is this very task)."""
        async with database.transaction() as session:
            await self.record(session, action, **kwargs)

    async def checkpoint(self, session: AsyncSession) -> Checkpoint:
        """The chain head, sealed with the audit key, to be kept OUTSIDE the database
        (a file, a log service): it lets `verify` detect rows cut off the end."""
        last = (
            await session.execute(
                select(AuditLog.seq, AuditLog.hash).order_by(AuditLog.seq.desc()).limit(1)
            )
        ).first()
        seq, head = (last[0], last[1]) if last else (0, GENESIS)
        return Checkpoint(seq, head, self._seal_checkpoint(seq, head))

    def _seal_checkpoint(self, seq: int, head: str) -> str:
        return hmac.new(self._key, f"checkpoint|{seq}|{head}".encode(), hashlib.sha256).hexdigest()

    async def verify(
        self, session: AsyncSession, checkpoints: list[Checkpoint] | None = None
    ) -> VerifyReport:
        """Walk the chain; report the first row that was altered, inserted or removed.
        With checkpoints, rows removed from the end are reported too."""
        report = await self._verify_chain(session)
        if not report.ok:
            return report
        heads = await _heads(session, [c.seq for c in checkpoints or []])
        for cp in sorted(checkpoints or [], key=lambda c: c.seq):
            if not hmac.compare_digest(cp.mac, self._seal_checkpoint(cp.seq, cp.head)):
                return VerifyReport(False, report.rows_checked, cp.seq, "checkpoint forged")
            if cp.seq == 0:
                continue
            if heads.get(cp.seq) != cp.head:
                return VerifyReport(
                    False,
                    report.rows_checked,
                    cp.seq,
                    "row of a checkpoint is missing or differs (log truncated)",
                )
        return report

    async def _verify_chain(self, session: AsyncSession) -> VerifyReport:
        expected_prev = GENESIS
        expected_seq = 1
        checked = 0
        async for row in _stream(session):
            if row.seq != expected_seq:
                return VerifyReport(
                    False, checked, row.seq, f"rows {expected_seq}..{row.seq - 1} are missing"
                )
            if row.prev_hash != expected_prev:
                return VerifyReport(
                    False, checked, row.seq, "chain link broken (row removed or reordered)"
                )
            if not hmac.compare_digest(row.hash, chain_hash(self._key, expected_prev, row)):
                return VerifyReport(False, checked, row.seq, "row content altered")
            expected_prev = row.hash
            expected_seq += 1
            checked += 1
        return VerifyReport(True, checked, None, "chain intact")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    head: str
    mac: str


async def _heads(session: AsyncSession, seqs: list[int]) -> dict[int, str]:
    if not seqs:
        return {}
    rows = await session.execute(select(AuditLog.seq, AuditLog.hash).where(AuditLog.seq.in_(seqs)))
    return {seq: head for seq, head in rows.all()}


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    rows_checked: int
    first_bad_seq: int | None
    problem: str


async def _stream(session: AsyncSession) -> AsyncIterator[AuditLog]:
    last = 0
    while True:
        batch = list(
            await session.scalars(
                select(AuditLog).where(AuditLog.seq > last).order_by(AuditLog.seq).limit(1000)
            )
        )
        if not batch:
            return
        for row in batch:
            yield row
        last = batch[-1].seq
