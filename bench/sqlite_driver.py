"""Our SQLite driver (`helpdesk.sqlite_driver`) against the aiosqlite library it stands in for.

    python -m bench.sqlite_driver [--rows 20000] [--reads 4000] [--writes 1000]

The same SQLAlchemy async engine, file and pragmas, once with `module=sqlite_driver.dbapi()`
(what `helpdesk.db.create_engine` uses) and once with the stock aiosqlite dialect. Measures
p50 of a primary-key read in a read transaction, of a small write transaction (insert +
commit), and the event loop's CPU per statement; alternates the two drivers in rounds so
both meet the same machine. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from helpdesk import sqlite_driver


def _engine(path: Path, ours: bool) -> AsyncEngine:
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}}
    if ours:
        kwargs["module"] = sqlite_driver.dbapi()
    return create_async_engine(f"sqlite+aiosqlite:///{path}", **kwargs)


async def _prepare(path: Path, rows: int) -> list[str]:
    engine = _engine(path, ours=True)
    ids = [str(uuid.uuid4()) for _ in range(rows)]
    async with engine.begin() as conn:
        await conn.execute(text("PRAGMA journal_mode=WAL"))
        await conn.execute(text("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, body BLOB)"))
        await conn.execute(
            text("INSERT INTO t VALUES (:id, :n, :body)"),
            [{"id": i, "n": n, "body": b"x" * 200} for n, i in enumerate(ids)],
        )
    await engine.dispose()
    return ids


async def _measure(path: Path, ours: bool, ids: list[str], reads: int, writes: int) -> dict:
    engine = _engine(path, ours)
    read_ms: list[float] = []
    write_ms: list[float] = []
    cpu0 = time.process_time()
    for n in range(reads):
        t0 = time.perf_counter()
        async with engine.connect() as conn:
            await conn.execute(text("SELECT n, body FROM t WHERE id = :id"), {"id": ids[n]})
        read_ms.append((time.perf_counter() - t0) * 1000)
    cpu_read = (time.process_time() - cpu0) / reads * 1000
    cpu0 = time.process_time()
    for _ in range(writes):
        t0 = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO t VALUES (:id, 0, :body)"),
                {"id": str(uuid.uuid4()), "body": b"y" * 200},
            )
        write_ms.append((time.perf_counter() - t0) * 1000)
    cpu_write = (time.process_time() - cpu0) / writes * 1000
    await engine.dispose()
    return {
        "read_p50_ms": statistics.median(read_ms),
        "write_p50_ms": statistics.median(write_ms),
        "read_cpu_ms": cpu_read,
        "write_cpu_ms": cpu_write,
    }


async def run(rows: int, reads: int, writes: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        path = Path(tmp) / "bench.db"
        ids = await _prepare(path, rows)
        got: dict[str, dict[str, list[float]]] = {"ours": {}, "aiosqlite": {}}
        for round_no in range(rounds):
            order = (True, False) if round_no % 2 == 0 else (False, True)
            for ours in order:
                figures = await _measure(path, ours, ids[round_no::rounds], reads, writes)
                for key, value in figures.items():
                    got["ours" if ours else "aiosqlite"].setdefault(key, []).append(value)
    out: dict[str, Any] = {}
    for driver, figures in got.items():
        for key, values in figures.items():
            out[f"{driver}_{key}"] = round(statistics.median(values), 3)
    for key in ("read_p50_ms", "write_p50_ms", "read_cpu_ms", "write_cpu_ms"):
        out[f"aiosqlite_over_ours_{key}"] = round(out[f"aiosqlite_{key}"] / out[f"ours_{key}"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--writes", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=4)
    options = parser.parse_args()
    figures = asyncio.run(run(options.rows, options.reads, options.writes, options.rounds))
    print(json.dumps(figures, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
