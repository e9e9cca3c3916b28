"""`likely_rare`: SQLite gets the planner hint, PostgreSQL the plain condition, and the
rows found are the same with and without it."""

from __future__ import annotations

import sqlite3

from sqlalchemy import column, select, table
from sqlalchemy.dialects import postgresql, sqlite

from helpdesk.sql_hints import likely_rare

tickets = table("tickets", column("id"), column("status"), column("priority"))
LIVE = tickets.c.status.in_(["OPEN", "IN_PROGRESS"])


def _sql(dialect: object) -> str:
    query = select(tickets.c.id).where(tickets.c.priority == "HIGH", likely_rare(LIVE))
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))  # type: ignore[arg-type]


def test_sqlite_gets_likelihood_and_postgresql_the_condition_alone() -> None:
    on_sqlite = _sql(sqlite.dialect())
    assert "likelihood(tickets.status IN ('OPEN', 'IN_PROGRESS'), 0.05)" in on_sqlite
    assert "= 1" not in on_sqlite  # a bare condition, as the planner needs it
    on_postgres = _sql(postgresql.dialect())
    assert "likelihood" not in on_postgres
    assert "tickets.status IN ('OPEN', 'IN_PROGRESS')" in on_postgres


def test_the_hint_changes_no_row() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, status TEXT, priority TEXT)")
    db.execute("CREATE INDEX ix_status ON tickets (status)")
    db.execute("CREATE INDEX ix_priority ON tickets (priority)")
    statuses = ["CLOSED"] * 8 + ["OPEN", "IN_PROGRESS"]
    rows = [(i, statuses[i % 10], ["LOW", "HIGH"][i % 3 == 0]) for i in range(2000)]
    db.executemany("INSERT INTO tickets VALUES (?, ?, ?)", rows)
    db.execute("ANALYZE")
    hinted = db.execute(_sql(sqlite.dialect())).fetchall()
    plain = db.execute(
        "SELECT id FROM tickets WHERE priority = 'HIGH' AND status IN ('OPEN', 'IN_PROGRESS')"
    ).fetchall()
    assert sorted(hinted) == sorted(plain)
    assert len(plain) == sum(1 for i, s, p in rows if p == "HIGH" and s != "CLOSED") > 0
    plan = " ".join(r[-1] for r in db.execute("EXPLAIN QUERY PLAN " + _sql(sqlite.dialect())))
    # Without the hint SQLite takes ix_priority here (1000 rows a value against 667).
    assert "ix_status" in plan  # the rare statuses' index, not every HIGH ticket
