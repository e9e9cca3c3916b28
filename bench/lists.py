"""List benchmark: GET /tickets with realistic filters over 1,000,000 tickets, on a
temporary SQLite file and a temporary PostgreSQL database.

    python -m bench.lists [--tickets 1000000] [--users 50000] [--requests 2040]
                          [--backend sqlite --backend postgres]
                          [--keep DIR] [--scenario NAME ...] [--breakdown]

``--keep DIR`` keeps the loaded databases (the SQLite file and the secrets in DIR, the
PostgreSQL database ``helpdesk_bench_keep``) and reuses them on the next run with the same
``--keep``: pending migrations are applied to the loaded data (then planner statistics are
refreshed) instead of loading again. ``--scenario`` measures only the named scenarios.
``--breakdown`` adds, per scenario, p50/p99 of where a request's time goes: the SQL of the
authentication (session and user), of the list service, of the audit row, the list
service as a whole, and the rest (routing, transactions' BEGIN/COMMIT, serialisation).

Rows are bulk-loaded straight into the read-model tables (multi-row executemany on SQLite,
binary COPY on PostgreSQL, secondary indexes dropped during the load and rebuilt after):

* 50,000 requesters, 200 agents, 40 categories in a two-level tree;
* created_at spread over two years; status follows age (recent tickets open, old ones
  closed: about 2% OPEN, 3% IN_PROGRESS, 5% RESOLVED overall), priority 30/45/20/5 %
  LOW/MEDIUM/HIGH/CRITICAL, 10% of open tickets unassigned, 3% escalated, 60% with a due
  date, 0.5% deleted;
* titles of 3-7 words drawn (Zipf) from a 2,000-word vocabulary, sealed with AES-GCM under
  one of 16 shared data keys (the real format and associated data, so the list decrypts
  them exactly as in production); descriptions are random bytes of ciphertext size (the
  list never reads them); the keyed search tokens of the title words; 0-3 tags per ticket.

Then it measures p50/p99 of GET /tickets through the ASGI app (httpx ASGITransport, one
client at a time: latency, not throughput), authenticated and audited like any request,
over a mix of queue views (status IN (OPEN, IN_PROGRESS) newest first, its next page by
cursor, by assignee, unassigned, by priority, sorted by priority and by due date, escalated,
an end user's own tickets, a tag, a category with a date range, a keyword, two keywords).
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app, prepare_runtime
from helpdesk import eventloop, heap
from helpdesk.crypto import DataKey, WrappedKey
from helpdesk.migrate import upgrade
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services import ticket_tags, ticket_text
from helpdesk.settings import Settings
from models.enums import Role

PG_HOST = os.environ.get("HELPDESK_BENCH_PG_HOST", "127.0.0.1")
PG_ADMIN_DSN = os.environ.get("HELPDESK_BENCH_PG", f"postgresql://postgres@{PG_HOST}:5432/test")
NOW = datetime.now(UTC).replace(microsecond=0)
SPAN = timedelta(days=730)
STATUSES = ("OPEN", "IN_PROGRESS", "RESOLVED", "CLOSED")
PRIORITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
PRIORITY_WEIGHTS = (30, 45, 20, 5)
TAGS = (
    "billing",
    "vpn",
    "email",
    "hardware",
    "printer",
    "network",
    "password",
    "access",
    "laptop",
    "phone",
    "software",
    "onboarding",
    "offboarding",
    "security",
    "wifi",
    "monitor",
    "license",
    "portal",
    "appointment",
    "records",
    "pharmacy",
    "insurance",
    "lab-results",
    "telehealth",
    "scheduling",
    "mobile-app",
    "sso",
    "mfa",
    "backup",
    "urgent",
)
VOCABULARY_SIZE = 2000
CHUNK = 20_000


# --- synthetic data --------------------------------------------------------------------


def _vocabulary(rng: random.Random) -> list[str]:
    syllables = [
        "ka",
        "to",
        "mi",
        "re",
        "su",
        "no",
        "va",
        "li",
        "po",
        "de",
        "ra",
        "ne",
        "shi",
        "bo",
        "tu",
        "ge",
        "fa",
        "zo",
        "me",
        "ri",
        "lu",
        "pa",
        "xe",
        "qui",
    ]
    words: set[str] = set()
    while len(words) < VOCABULARY_SIZE:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words, key=lambda w: (len(w), w))


def _thresholds(weights: Sequence[float]) -> list[float]:
    total = sum(weights)
    return list(itertools.accumulate(w / total for w in weights))


# Status by age: recent tickets are worked on, old ones closed.
_STATUS_BY_AGE = (
    (14, _thresholds((40, 35, 20, 5))),
    (60, _thresholds((5, 10, 25, 60))),
    (10**9, _thresholds((0.6, 0.9, 2.5, 96))),
)
_PRIORITY_THRESHOLDS = _thresholds(PRIORITY_WEIGHTS)


def _pick(values: Sequence[str], thresholds: list[float], draw: float) -> str:
    for value, limit in zip(values, thresholds, strict=True):
        if draw < limit:
            return value
    return values[-1]


def _status_for(age_days: float, draw: float) -> str:
    for max_age, thresholds in _STATUS_BY_AGE:
        if age_days < max_age:
            return _pick(STATUSES, thresholds, draw)
    return STATUSES[-1]


@dataclass
class World:
    """Ids shared by both databases, and what the scenarios need to know."""

    end_user_ids: list[uuid.UUID]
    agent_ids: list[uuid.UUID]
    category_ids: list[uuid.UUID]
    parent_of: dict[uuid.UUID, uuid.UUID | None]
    keys: list[tuple[DataKey, WrappedKey]]
    vocabulary: list[str]
    tokens: list[str]
    tag_tokens: dict[str, str]


@dataclass
class TicketRow:
    id: uuid.UUID
    number: int
    key: int
    title: bytes
    description: bytes
    status: str
    priority: str
    rank: int
    category: uuid.UUID | None
    requester: uuid.UUID
    assignee: uuid.UUID | None
    due: datetime | None
    escalated: bool
    created: datetime
    updated: datetime
    deleted: datetime | None
    words: list[int]
    tags: list[tuple[str, str]]  # (blind token, sealed tag)


def make_world(runtime: Runtime, users: int, seed: int = 7) -> World:
    rng = random.Random(seed)
    keyring = runtime.keys.keyring
    categories = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(40)]
    parent_of: dict[uuid.UUID, uuid.UUID | None] = {}
    for i, cat in enumerate(categories):
        parent_of[cat] = None if i < 8 else categories[i % 8]
    vocabulary = _vocabulary(rng)
    return World(
        end_user_ids=[uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(users)],
        agent_ids=[uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(200)],
        category_ids=categories,
        parent_of=parent_of,
        keys=[keyring.new_data_key() for _ in range(16)],
        vocabulary=vocabulary,
        tokens=[runtime.blind_index.search_token(w) for w in vocabulary],
        tag_tokens={tag: ticket_tags.tag_token(runtime.blind_index, tag) for tag in TAGS},
    )


def generate_tickets(world: World, count: int, seed: int = 11) -> Iterator[list[TicketRow]]:
    """Tickets in creation order (numbers follow created_at), in chunks."""
    rng = random.Random(seed)
    zipf = list(itertools.accumulate(1.0 / (r + 1) for r in range(VOCABULARY_SIZE)))
    word_ids = range(VOCABULARY_SIZE)
    offsets = sorted(rng.random() for _ in range(count))
    requesters = world.end_user_ids
    chunk: list[TicketRow] = []
    for n, fraction in enumerate(offsets, start=1):
        created = NOW - SPAN + SPAN * fraction
        age = (NOW - created).total_seconds() / 86400
        status = _status_for(age, rng.random())
        priority = _pick(PRIORITIES, _PRIORITY_THRESHOLDS, rng.random())
        ticket_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        requester = requesters[rng.randrange(len(requesters))]
        if status == "OPEN" and rng.random() < 0.10:
            assignee = None
        else:
            assignee = rng.choice(world.agent_ids)
        words = sorted(set(rng.choices(word_ids, cum_weights=zipf, k=3 + int(rng.random() * 5))))
        key_index = n % len(world.keys)
        title = " ".join(world.vocabulary[w] for w in words)
        updated = min(NOW, created + timedelta(days=rng.random() * min(age, 30)))
        chunk.append(
            TicketRow(
                id=ticket_id,
                number=n,
                key=key_index,
                title=ticket_text.seal(world.keys[key_index][0], ticket_id, "title", title) or b"",
                description=os.urandom(60 + int(rng.random() * 140)),
                status=status,
                priority=priority,
                rank=PRIORITIES.index(priority) + 1,
                category=None if rng.random() < 0.05 else rng.choice(world.category_ids),
                requester=requester,
                assignee=assignee,
                due=created + timedelta(hours=4 + rng.random() * 236)
                if rng.random() < 0.6
                else None,
                escalated=rng.random() < 0.03,
                created=created,
                updated=updated,
                deleted=updated if rng.random() < 0.005 else None,
                words=words,
                tags=[
                    (
                        world.tag_tokens[tag],
                        ticket_tags.seal_tag(
                            world.keys[key_index][0], ticket_id, world.tag_tokens[tag], tag
                        ),
                    )
                    for tag in rng.sample(
                        TAGS[: (5, 12, 30)[int(rng.random() * 3)]],
                        (0, 1, 1, 2, 3)[int(rng.random() * 5)],
                    )
                ],
            )
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- loading ---------------------------------------------------------------------------

TICKET_COLUMNS = (
    "id",
    "number",
    "data_key_id",
    "title_enc",
    "description_enc",
    "status",
    "priority",
    "priority_rank",
    "category_id",
    "requester_id",
    "assignee_id",
    "due_date",
    "escalated",
    "escalation_level",
    "version",
    "created_by",
    "created_at",
    "updated_at",
    "deleted_at",
)
USER_COLUMNS = (
    "id",
    "data_key_id",
    "email_bidx",
    "email_enc",
    "role",
    "is_active",
    "password_hash",
    "mfa_enabled",
    "failed_logins",
    "lockouts",
    "created_at",
    "updated_at",
)
CATEGORY_COLUMNS = ("id", "name", "parent_id", "is_active", "created_at", "updated_at")
LOADED_TABLES = ("tickets", "ticket_tags", "ticket_search_tokens")


def _user_rows(world: World) -> Iterator[tuple[uuid.UUID, str, bytes]]:
    """(id, role, email bytes) of every raw user: they never sign in and the list never
    decrypts a user, so the email column holds opaque bytes."""
    for role, ids in (
        (Role.END_USER.value, world.end_user_ids),
        (Role.SUPPORT_AGENT.value, world.agent_ids),
    ):
        for user_id in ids:
            yield user_id, role, user_id.bytes * 3


def _ticket_tuple(t: TicketRow, world: World, conv: Any) -> tuple[Any, ...]:
    return (
        conv.id(t.id),
        t.number,
        conv.id(world.keys[t.key][0].key_id),
        t.title,
        t.description,
        t.status,
        t.priority,
        t.rank,
        conv.id(t.category),
        conv.id(t.requester),
        conv.id(t.assignee),
        conv.ts(t.due),
        conv.flag(t.escalated),
        0,
        0,
        conv.id(t.requester),
        conv.ts(t.created),
        conv.ts(t.updated),
        conv.ts(t.deleted),
    )


class SqliteForm:
    """Values as SQLAlchemy stores them on SQLite: hex UUIDs, naive UTC text timestamps."""

    @staticmethod
    def id(value: uuid.UUID | None) -> str | None:
        return value.hex if value is not None else None

    @staticmethod
    def ts(value: datetime | None) -> str | None:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if value else None

    @staticmethod
    def flag(value: bool) -> int:
        return int(value)


class PgForm:
    @staticmethod
    def id(value: uuid.UUID | None) -> uuid.UUID | None:
        return value

    @staticmethod
    def ts(value: datetime | None) -> datetime | None:
        return value

    @staticmethod
    def flag(value: bool) -> bool:
        return value


def _static_rows(world: World, conv: Any) -> dict[str, list[tuple[Any, ...]]]:
    now = conv.ts(NOW)
    keys = [(conv.id(w.key_id), w.kek_id, w.wrapped, now) for _, w in world.keys]
    users = [
        (
            conv.id(uid),
            conv.id(world.keys[0][0].key_id),
            uid.hex + "0" * 32,
            blob,
            role,
            conv.flag(True),
            "!bench-no-login",
            conv.flag(False),
            0,
            0,
            now,
            now,
        )
        for uid, role, blob in _user_rows(world)
    ]
    categories = [
        (conv.id(cid), f"Category {i}", conv.id(world.parent_of[cid]), conv.flag(True), now, now)
        for i, cid in enumerate(world.category_ids)
    ]
    return {"data_keys": keys, "users": users, "categories": categories}


def load_sqlite(path: Path, world: World, tickets: int) -> dict[str, float]:
    """Bulk-load into the migrated SQLite file; returns the seconds of each phase."""
    phases: dict[str, float] = {}
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    db.execute("PRAGMA foreign_keys=OFF")
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({','.join('?' * len(LOADED_TABLES))})",
        LOADED_TABLES,
    ).fetchall()
    for name, _ in indexes:
        db.execute(f'DROP INDEX "{name}"')
    db.execute("BEGIN")
    static = _static_rows(world, SqliteForm)
    db.executemany(
        "INSERT INTO data_keys (id, kek_id, wrapped_key, created_at) VALUES (?, ?, ?, ?)",
        static["data_keys"],
    )
    db.executemany(
        f"INSERT INTO users ({', '.join(USER_COLUMNS)}) VALUES "
        f"({', '.join('?' * len(USER_COLUMNS))})",
        static["users"],
    )
    db.executemany(
        f"INSERT INTO categories ({', '.join(CATEGORY_COLUMNS)}) VALUES "
        f"({', '.join('?' * len(CATEGORY_COLUMNS))})",
        static["categories"],
    )
    insert = (
        f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) VALUES "
        f"({', '.join('?' * len(TICKET_COLUMNS))})"
    )
    for chunk in _chunks(world, tickets):
        db.executemany(insert, [_ticket_tuple(t, world, SqliteForm) for t in chunk])
        db.executemany(
            "INSERT INTO ticket_tags (ticket_id, token, tag_sealed) VALUES (?, ?, ?)",
            [(t.id.hex, token, sealed) for t in chunk for token, sealed in t.tags],
        )
        db.executemany(
            "INSERT INTO ticket_search_tokens (ticket_id, token, ticket_created_at) "
            "VALUES (?, ?, ?)",
            [(t.id.hex, world.tokens[w], SqliteForm.ts(t.created)) for t in chunk for w in t.words],
        )
    db.execute("COMMIT")
    phases["insert"] = time.perf_counter() - started
    for _, sql in indexes:
        db.execute(sql)
    phases["indexes"] = time.perf_counter() - started - phases["insert"]
    # What `PRAGMA optimize` does on a long-running deployment: planner statistics.
    db.execute("ANALYZE")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    phases["total"] = time.perf_counter() - started
    return phases


_CACHED: dict[int, list[list[TicketRow]]] = {}


def _chunks(world: World, tickets: int) -> Iterator[list[TicketRow]]:
    """The same tickets for both databases (generated once, encryption included)."""
    if tickets in _CACHED:
        yield from _CACHED[tickets]
        return
    kept: list[list[TicketRow]] = []
    for chunk in generate_tickets(world, tickets):
        kept.append(chunk)
        yield chunk
    _CACHED[tickets] = kept


async def load_postgres(dsn: str, world: World, tickets: int) -> dict[str, float]:
    """Bulk-load with COPY into the migrated database; returns the seconds of each phase."""
    import asyncpg

    phases: dict[str, float] = {}
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # no FK triggers
        await conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename = ANY($1::text[]) AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint)",
            list(LOADED_TABLES),
        )
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        static = _static_rows(world, PgForm)
        await conn.copy_records_to_table(
            "data_keys",
            records=static["data_keys"],
            columns=["id", "kek_id", "wrapped_key", "created_at"],
        )
        await conn.copy_records_to_table(
            "users", records=static["users"], columns=list(USER_COLUMNS)
        )
        await conn.copy_records_to_table(
            "categories", records=static["categories"], columns=list(CATEGORY_COLUMNS)
        )
        for chunk in _chunks(world, tickets):
            await conn.copy_records_to_table(
                "tickets",
                records=[_ticket_tuple(t, world, PgForm) for t in chunk],
                columns=list(TICKET_COLUMNS),
            )
            await conn.copy_records_to_table(
                "ticket_tags",
                records=[(t.id, token, sealed) for t in chunk for token, sealed in t.tags],
                columns=["ticket_id", "token", "tag_sealed"],
            )
            await conn.copy_records_to_table(
                "ticket_search_tokens",
                records=[(t.id, world.tokens[w], t.created) for t in chunk for w in t.words],
                columns=["ticket_id", "token", "ticket_created_at"],
            )
        phases["insert"] = time.perf_counter() - started
        for row in indexes:
            await conn.execute(row["indexdef"])
        phases["indexes"] = time.perf_counter() - started - phases["insert"]
        for table in ("users", "categories", *LOADED_TABLES):
            await conn.execute(f"VACUUM ANALYZE {table}")
        # Write the load's dirty buffers out now: otherwise the checkpointer spreads them
        # over the next minutes, into the measurement (a database in service is past that).
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    phases["total"] = time.perf_counter() - started
    return phases


# --- measuring -------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    actor: str
    params: dict[str, Any]


def scenarios(world: World, rng: random.Random, count: int) -> list[Scenario]:
    """A mix of list calls that help desk users make all day."""
    open_ = ["OPEN", "IN_PROGRESS"]
    words = world.vocabulary

    def pick_word() -> str:
        return words[rng.randint(20, 400)]

    makers = [
        lambda: Scenario("queue", "agent", {"status": open_}),
        lambda: Scenario("queue_next_page", "agent", {"status": open_, "_next": True}),
        lambda: Scenario("my_queue", "agent", {"assignee_id": "me", "status": open_}),
        lambda: Scenario(
            "by_assignee",
            "agent",
            {"assignee_id": str(rng.choice(world.agent_ids)), "status": open_},
        ),
        lambda: Scenario("unassigned", "agent", {"assignee_id": "unassigned", "status": "OPEN"}),
        lambda: Scenario(
            "by_priority", "agent", {"priority": ["HIGH", "CRITICAL"], "status": open_}
        ),
        lambda: Scenario("sorted_by_priority", "agent", {"status": open_, "sort": "priority"}),
        lambda: Scenario(
            "due_soonest", "agent", {"status": open_, "sort": "due_date", "order": "asc"}
        ),
        lambda: Scenario("escalated", "agent", {"escalated": "true", "status": open_}),
        lambda: Scenario("end_user_own", "end_user", {}),
        lambda: Scenario("end_user_open", "end_user", {"status": open_}),
        lambda: Scenario("tag", "agent", {"tag": rng.choice(TAGS[:12])}),
        lambda: Scenario("tag_open", "agent", {"tag": rng.choice(TAGS[:12]), "status": open_}),
        lambda: Scenario(
            "category_recent",
            "agent",
            {
                "category_id": str(rng.choice(world.category_ids)),
                "created_from": (NOW - timedelta(days=90)).isoformat(),
            },
        ),
        lambda: Scenario("keyword", "agent", {"q": pick_word()}),
        lambda: Scenario(
            "two_keywords", "agent", {"q": f"{pick_word()} {words[rng.randint(0, 30)]}"}
        ),
        lambda: Scenario("recently_updated", "agent", {"sort": "updated_at"}),
    ]
    return [makers[i % len(makers)]() for i in range(count)]


class Breakdown:
    """Where one request's time goes: SQL statements by what they touch (timed around the
    driver's execute, the fetch included); the authentication (token, session check), the
    audit row and the list service (audit included) as wholes; and what lies outside the
    service (authentication, the request's transaction, routing, serialisation)."""

    CATEGORIES = ("auth_sql", "list_sql", "audit_sql", "keys_sql", "auth", "audit", "service")

    def __init__(self, runtime: Runtime) -> None:
        from sqlalchemy import event

        import api.deps
        from helpdesk.services import ticket_list

        self.current: dict[str, float] = {}
        self._started: list[float] = []
        self.by_scenario: dict[str, dict[str, list[float]]] = {}
        engine = runtime.database.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        self._restores: list[Any] = []
        self._time(ticket_list, "list_tickets", "service")
        self._time(api.deps, "authenticate_token", "auth")
        self._time(runtime.audit, "record", "audit")

    def _time(self, owner: Any, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - started)

        setattr(owner, attribute, timed)
        self._restores.append(lambda: setattr(owner, attribute, original))

    def close(self) -> None:
        for restore in self._restores:
            restore()

    def _add(self, name: str, seconds: float) -> None:
        self.current[name] = self.current.get(name, 0.0) + seconds * 1000

    def _before(self, *_: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        elapsed = time.perf_counter() - self._started.pop()
        sql = statement.lower()
        if "audit_log" in sql or "pg_advisory" in sql:
            name = "audit_sql"
        elif "auth_sessions" in sql or "from users" in sql:
            name = "auth_sql"
        elif "data_keys" in sql and "tickets" not in sql:
            name = "keys_sql"
        else:
            name = "list_sql"
        self._add(name, elapsed)

    def start(self) -> None:
        self.current = {}

    def finish(self, scenario: str, total_ms: float) -> None:
        figures = self.by_scenario.setdefault(scenario, {})
        for name in self.CATEGORIES:
            figures.setdefault(name, []).append(self.current.get(name, 0.0))
        figures.setdefault("outside_service", []).append(
            total_ms - self.current.get("service", 0.0)
        )

    def summary(self) -> dict[str, dict[str, list[float]]]:
        """Per scenario and part: [p50, p99] in ms."""
        return {
            scenario: {
                name: [round(statistics.median(v), 2), round(_percentile(v, 99), 2)]
                for name, v in parts.items()
            }
            for scenario, parts in self.by_scenario.items()
        }


async def measure(
    runtime: Runtime,
    world: World,
    requests: int,
    only: Sequence[str] = (),
    breakdown: bool = False,
) -> dict[str, Any]:
    from tests.support.factories import make_user

    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    end_user = await make_user(runtime, Role.END_USER)
    await _give_actor_rows(runtime, world, agent.id, end_user.id)
    actors = {"agent": agent, "end_user": end_user}
    app = create_app(runtime=runtime, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    rng = random.Random(5)
    timings: dict[str, list[float]] = {}
    parts = Breakdown(runtime) if breakdown else None
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        plan = scenarios(world, rng, requests)
        if only:
            # The page after the queue needs the queue's cursor.
            keep = {*only, "queue"} if "queue_next_page" in only else set(only)
            plan = [s for s in plan if s.name in keep]
        for warm in scenarios(world, random.Random(9), 40):  # warm caches and pools
            await client.get(
                "/api/v1/tickets", params=_params(warm.params), headers=actors[warm.actor].headers
            )
        # As `helpdesk api` does once it listens (helpdesk.heap): start-up's objects, and
        # here the generated world's, out of every later collection's walk.
        heap.settle()
        pauses = _GcPauses()
        next_cursor: str | None = None
        for scenario in plan:
            params = _params(scenario.params)
            if scenario.params.get("_next"):
                if next_cursor is None:
                    continue
                params["cursor"] = next_cursor
            if parts is not None:
                parts.start()
            started = time.perf_counter()
            response = await client.get(
                "/api/v1/tickets", params=params, headers=actors[scenario.actor].headers
            )
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{scenario.name}: {response.status_code} {response.text}")
            if scenario.name == "queue":
                next_cursor = response.json()["next_cursor"]
            if only and scenario.name not in only:
                continue
            timings.setdefault(scenario.name, []).append(elapsed)
            if parts is not None:
                parts.finish(scenario.name, elapsed)
        # Reference: the fixed cost of any authenticated request (token, session, user,
        # a small read, no audit row) on the same stack.
        baseline: list[float] = []
        for _ in range(100):
            started = time.perf_counter()
            await client.get("/api/v1/categories", headers=agent.headers)
            baseline.append((time.perf_counter() - started) * 1000)
    pauses.close()
    every = [t for values in timings.values() for t in values]
    extra: dict[str, Any] = {"gc_pauses": pauses.summary()}
    if parts is not None:
        parts.close()
        extra["breakdown_p50_p99_ms"] = parts.summary()
    return {
        **extra,
        "baseline_p50_ms": round(statistics.median(baseline), 2),
        "baseline_p99_ms": round(_percentile(baseline, 99), 2),
        "p50_ms": round(statistics.median(every), 2),
        "p99_ms": round(_percentile(every, 99), 2),
        "requests": len(every),
        "by_scenario_p99_ms": {k: round(_percentile(v, 99), 2) for k, v in timings.items()},
        "by_scenario_p50_ms": {k: round(statistics.median(v), 2) for k, v in timings.items()},
    }


class _GcPauses:
    """The cyclic collector's pauses while the requests run, per generation."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif self.started is not None:
            self.pauses[info["generation"]].append((time.perf_counter() - self.started) * 1000)
            self.started = None

    def close(self) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {
            f"gen{g}": {"count": len(p), "max_ms": round(max(p), 2) if p else 0.0}
            for g, p in self.pauses.items()
        }


def _params(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def _percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def _give_actor_rows(
    runtime: Runtime, world: World, agent_id: uuid.UUID, end_user_id: uuid.UUID
) -> None:
    """The signed-in bench actors take over some generated tickets: the end user becomes
    the requester of 25, the agent the assignee of 1 in 200 (on a reused database, from
    the actors of the previous run, who are the only users able to sign in)."""
    from sqlalchemy import or_, select, update

    from models.ticket import Ticket
    from models.user import User

    async with runtime.database.transaction() as session:
        earlier = select(User.id).where(
            User.password_hash != "!bench-no-login", User.id.not_in([agent_id, end_user_id])
        )
        requester = world.end_user_ids[0]
        await session.execute(
            update(Ticket)
            .where(or_(Ticket.requester_id == requester, Ticket.requester_id.in_(earlier)))
            .values(requester_id=end_user_id)
        )
        other = world.agent_ids[0]
        await session.execute(
            update(Ticket)
            .where(or_(Ticket.assignee_id == other, Ticket.assignee_id.in_(earlier)))
            .values(assignee_id=agent_id)
        )
        await session.scalar(select(Ticket.id).limit(1))


# --- driver ----------------------------------------------------------------------------


def _settings(var_dir: Path, url: str) -> Settings:
    return Settings(
        environment="test",
        var_dir=var_dir,
        database_url=url,
        email_backend="file",
        argon2_time_cost=1,
        argon2_memory_cost=8192,
        run_worker_in_api=False,
        auto_assign_on_create=False,
    )


KEEP_PG_DATABASE = "helpdesk_bench_keep"


@dataclass
class Options:
    tickets: int = 1_000_000
    users: int = 50_000
    requests: int = 2040
    backends: Sequence[str] = ("sqlite", "postgres")
    keep: Path | None = None
    only: Sequence[str] = ()
    breakdown: bool = False


def _marker(work: Path, backend: str) -> Path:
    return work / f"loaded-{backend}.json"


def _loaded(work: Path, backend: str, options: Options) -> bool:
    """Whether a kept database of this backend holds the same bench data."""
    marker = _marker(work, backend)
    if options.keep is None or not marker.exists():
        return False
    wanted = {"tickets": options.tickets, "users": options.users}
    return bool(json.loads(marker.read_text()) == wanted)


def _mark(work: Path, backend: str, options: Options) -> None:
    if options.keep is not None:
        marker = _marker(work, backend)
        marker.write_text(json.dumps({"tickets": options.tickets, "users": options.users}))


async def _migrate_kept(url: str, backend: str, sqlite_path: Path | None = None) -> bool:
    """Apply pending migrations to a kept database; refresh statistics if any ran."""
    before = await asyncio.to_thread(_revision, url)
    await asyncio.to_thread(upgrade, url)
    after = await asyncio.to_thread(_revision, url)
    if before == after:
        return False
    if backend == "sqlite" and sqlite_path is not None:
        db = sqlite3.connect(sqlite_path)
        try:
            db.execute("ANALYZE")
        finally:
            db.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            for table in ("users", "categories", *LOADED_TABLES):
                await conn.execute(f"VACUUM ANALYZE {table}")
        finally:
            await conn.close()
    return True


def _revision(url: str) -> str | None:
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.split(":///", 1)[1])
        try:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            db.close()
        return str(row[0]) if row else None

    async def read() -> str | None:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            value = await conn.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await conn.close()
        return str(value) if value is not None else None

    return asyncio.run(read())


async def run(options: Options) -> dict[str, Any]:
    """Load (or reuse what --keep kept), measure, clean up; returns every figure."""
    tickets, users, requests = options.tickets, options.users, options.requests
    if options.keep is not None:
        options.keep.mkdir(parents=True, exist_ok=True)
        work = options.keep
    else:
        work = Path(tempfile.mkdtemp(prefix="helpdesk-bench-lists-"))
    results: dict[str, Any] = {"list_ticket_rows": tickets, "list_users": users}
    try:
        sqlite_url = f"sqlite+aiosqlite:///{work / 'lists.db'}"
        base = prepare_runtime(build_runtime(_settings(work, sqlite_url)))
        world = make_world(base, users)
        await base.close()
        if not all(_loaded(work, b, options) for b in options.backends):
            started = time.perf_counter()
            chunks = list(_chunks(world, tickets))
            results["list_generate_seconds"] = round(time.perf_counter() - started, 1)
            del chunks
        for backend in options.backends:
            if backend == "sqlite":
                if _loaded(work, "sqlite", options):
                    started = time.perf_counter()
                    await _migrate_kept(sqlite_url, "sqlite", work / "lists.db")
                    load = {"reused_migrate": time.perf_counter() - started, "total": 0.0}
                else:
                    (work / "lists.db").unlink(missing_ok=True)
                    await asyncio.to_thread(upgrade, sqlite_url)
                    load = await asyncio.to_thread(load_sqlite, work / "lists.db", world, tickets)
                    _mark(work, "sqlite", options)
                rt = prepare_runtime(build_runtime(_settings(work, sqlite_url)))
                try:
                    figures = await measure(rt, world, requests, options.only, options.breakdown)
                finally:
                    await rt.close()
            elif backend == "postgres":
                figures, load = await _run_postgres(work, world, options)
            else:
                raise ValueError(f"unknown backend {backend}")
            results[f"list_load_seconds_{backend}"] = round(load["total"], 1)
            results[f"list_load_phases_{backend}"] = {k: round(v, 1) for k, v in load.items()}
            results[f"list_p50_ms_{backend}"] = figures["p50_ms"]
            results[f"list_p99_ms_{backend}"] = figures["p99_ms"]
            results[f"list_requests_{backend}"] = figures["requests"]
            results[f"list_baseline_p50_ms_{backend}"] = figures["baseline_p50_ms"]
            results[f"list_baseline_p99_ms_{backend}"] = figures["baseline_p99_ms"]
            results[f"list_p99_ms_by_scenario_{backend}"] = figures["by_scenario_p99_ms"]
            results[f"list_p50_ms_by_scenario_{backend}"] = figures["by_scenario_p50_ms"]
            results[f"list_gc_pauses_{backend}"] = figures["gc_pauses"]
            if "breakdown_p50_p99_ms" in figures:
                results[f"list_breakdown_p50_p99_ms_{backend}"] = figures["breakdown_p50_p99_ms"]
    finally:
        _CACHED.clear()
        if options.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    results["list_loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return results


async def _run_postgres(
    work: Path, world: World, options: Options
) -> tuple[dict[str, Any], dict[str, float]]:
    import asyncpg

    reuse = _loaded(work, "postgres", options)
    name = (
        KEEP_PG_DATABASE if options.keep is not None else f"helpdesk_bench_{uuid.uuid4().hex[:10]}"
    )
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if reuse and not exists:
            reuse = False
        if not reuse:
            if exists:
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = f"postgresql+asyncpg://postgres@{PG_HOST}:5432/{name}"
        if reuse:
            started = time.perf_counter()
            await _migrate_kept(url, "postgres")
            load = {"reused_migrate": time.perf_counter() - started, "total": 0.0}
        else:
            await asyncio.to_thread(upgrade, url)
            load = await load_postgres(
                f"postgresql://postgres@{PG_HOST}:5432/{name}", world, options.tickets
            )
            _mark(work, "postgres", options)
        rt = prepare_runtime(build_runtime(_settings(work, url)))
        try:
            figures = await measure(rt, world, options.requests, options.only, options.breakdown)
            return figures, load
        finally:
            await rt.close()
    finally:
        if options.keep is None:
            admin = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=2040)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--keep", type=Path, help="keep the loaded databases here and reuse them next time"
    )
    parser.add_argument("--scenario", action="append", help="measure only these scenarios")
    parser.add_argument("--breakdown", action="store_true", help="where each scenario's time goes")
    args = parser.parse_args()
    options = Options(
        tickets=args.tickets,
        users=args.users,
        requests=args.requests,
        backends=args.backend or ("sqlite", "postgres"),
        keep=args.keep,
        only=args.scenario or (),
        breakdown=args.breakdown,
    )
    # The event loop `helpdesk api` runs on (helpdesk.eventloop).
    print(json.dumps(eventloop.run(run(options))))


if __name__ == "__main__":
    main()
