"""Anchors of the audit chain's head, kept OUTSIDE the database, so truncation shows.

The hash chain (`helpdesk.audit`) proves that no row was edited, inserted or removed in the
middle; it cannot prove that rows were not cut off the end (a prefix of a chain is a valid
chain). An anchor is a sealed checkpoint of the head — row count, head hash, time, and an
HMAC of the three under the audit key — appended on a schedule to a store the database's
holder cannot rewrite. `helpdesk audit verify` compares the chain with the latest anchor:
fewer rows than anchored, or a different row where the anchor points, is tampering.

Where the anchors go:
- the anchoring workflow's own Temporal history (the activity returns the sealed anchor);
- an append-only file (`FileAnchorStore`, default ``var/audit-anchors.log``): each line is
  one JSON anchor, written through a descriptor opened with O_APPEND and fsynced;
- in production, also an immutable (WORM) blob container: not built here (see README).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.audit import AuditTrail
from helpdesk.settings import Settings
from models.audit import AuditLog

# How much of the file's end `latest` reads to find the last line (a line is ~200 bytes).
_TAIL_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Anchor:
    """A sealed checkpoint of the chain: `rows` rows, the last with hash `head`, at `at`."""

    rows: int
    head: str
    at: datetime
    mac: str

    def to_json(self) -> str:
        return json.dumps(
            {"rows": self.rows, "head": self.head, "at": _iso(self.at), "mac": self.mac},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> Anchor:
        data = json.loads(line)
        return cls(
            rows=int(data["rows"]),
            head=str(data["head"]),
            at=datetime.fromisoformat(data["at"]),
            mac=str(data["mac"]),
        )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def anchor_mac(key: bytes, rows: int, head: str, at: datetime) -> str:
    message = f"audit-anchor|{rows}|{head}|{_iso(at)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def seal(key: bytes, rows: int, head: str, at: datetime) -> Anchor:
    return Anchor(rows, head, at, anchor_mac(key, rows, head, at))


def is_authentic(key: bytes, anchor: Anchor) -> bool:
    expected = anchor_mac(key, anchor.rows, anchor.head, anchor.at)
    return hmac.compare_digest(anchor.mac, expected)


class AnchorStore(Protocol):
    """Somewhere outside the database that only ever grows."""

    def describe(self) -> str: ...

    async def append(self, anchor: Anchor) -> None: ...

    async def latest(self) -> Anchor | None: ...


class AnchorStoreError(RuntimeError):
    """The store holds something that is not an anchor (its last line is damaged)."""


class FileAnchorStore:
    """One JSON anchor per line, appended through O_APPEND (never rewritten) and fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    async def append(self, anchor: Anchor) -> None:
        # Small synchronous writes: one line every few minutes.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (anchor.to_json() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    async def latest(self) -> Anchor | None:
        return self.latest_now()

    def latest_now(self) -> Anchor | None:
        """`latest`, synchronously (a small read of the file's tail)."""
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - _TAIL_BYTES))
                tail = handle.read()
        except FileNotFoundError:
            return None
        lines = [line for line in tail.split(b"\n") if line.strip()]
        if not lines:
            return None
        try:
            return Anchor.from_json(lines[-1].decode())
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            raise AnchorStoreError(f"the last line of {self.path} is not an anchor") from exc


def anchor_store(settings: Settings) -> AnchorStore:
    """The configured store (the append-only file)."""
    return FileAnchorStore(settings.audit_anchor_path)


async def anchor_now(
    audit: AuditTrail, key: bytes, session: AsyncSession, store: AnchorStore
) -> Anchor:
    """Seal the chain's current head and append it to `store`."""
    checkpoint = await audit.checkpoint(session)
    anchor = seal(key, checkpoint.seq, checkpoint.head, datetime.now(UTC))
    await store.append(anchor)
    return anchor


@dataclass(frozen=True, slots=True)
class AnchoredReport:
    """What `helpdesk audit verify` says about the chain against its latest anchor."""

    ok: bool
    rows: int
    message: str
    anchor: Anchor | None = None
    age: timedelta | None = None
    stale: bool = False


async def verify_against_anchor(
    audit: AuditTrail,
    key: bytes,
    session: AsyncSession,
    store: AnchorStore,
    *,
    max_age: timedelta,
    now: datetime | None = None,
) -> AnchoredReport:
    """Walk the chain, then hold it against the latest anchor: rows cut off the end, a chain
    rewritten from some row on, a forged or missing anchor are each a failure; an anchor
    older than `max_age` is a warning (`stale`)."""
    report = await audit.verify(session)
    if not report.ok:
        return AnchoredReport(
            False,
            report.rows_checked,
            f"audit chain BROKEN at row {report.first_bad_seq}: {report.problem} "
            f"({report.rows_checked} rows verified before it)",
        )
    rows = report.rows_checked  # the walk saw rows 1..rows, none missing
    try:
        anchor = await store.latest()
    except AnchorStoreError as exc:
        return AnchoredReport(False, rows, f"audit anchor unreadable: {exc}")
    if anchor is None:
        return AnchoredReport(
            False,
            rows,
            f"no audit anchor in {store.describe()}: rows cut off the end cannot be ruled out "
            "(run `helpdesk audit anchor`; the worker anchors on a schedule)",
        )
    if not is_authentic(key, anchor):
        return AnchoredReport(False, rows, "audit anchor forged (its MAC does not verify)", anchor)
    age = (now or datetime.now(UTC)) - anchor.at
    if rows < anchor.rows:
        return AnchoredReport(
            False,
            rows,
            f"audit chain truncated: anchor at row {anchor.rows} with head {anchor.head}, "
            f"the chain has {rows} rows",
            anchor,
            age,
        )
    if anchor.rows > 0:
        head = await session.scalar(select(AuditLog.hash).where(AuditLog.seq == anchor.rows))
        if head != anchor.head:
            return AnchoredReport(
                False,
                rows,
                f"audit chain rewritten: row {anchor.rows} does not have the anchored head "
                f"{anchor.head}",
                anchor,
                age,
            )
    return AnchoredReport(
        True,
        rows,
        f"audit chain intact ({rows} rows); latest anchor: row {anchor.rows}, "
        f"{describe_age(age)} old",
        anchor,
        age,
        stale=age > max_age,
    )


def describe_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
