"""Ticket numbers come from blocks a process reserves (helpdesk.numbers): unique under
concurrency, increasing within a process, disjoint between processes, on SQLite and
PostgreSQL; seeding's one-at-a-time numbers never collide with a block."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from helpdesk.db import Database
from helpdesk.numbers import NumberBlock
from helpdesk.runtime import Runtime
from helpdesk.services.tickets import allocate_number


async def _counter(database: Database) -> int:
    async with database.read() as session:
        value = await session.scalar(
            text("SELECT value FROM counters WHERE name = 'ticket_number'")
        )
    return int(value)


async def _concurrent_takes(block: NumberBlock, count: int) -> list[int]:
    return list(await asyncio.gather(*(block.take() for _ in range(count))))


async def _check_blocks(database: Database) -> None:
    start = await _counter(database)
    first = NumberBlock(database, 5)
    numbers = await _concurrent_takes(first, 12)
    # Unique, and exactly the 12 numbers after the counter: a refill waits for the one in
    # progress instead of reserving a block of its own.
    assert sorted(numbers) == list(range(start + 1, start + 13))
    # Three blocks of five were reserved; three numbers are left in this process.
    assert await _counter(database) == start + 15
    assert first.left == 3

    # Another process (another block) and a seeding write take numbers after the reserved
    # ones, never inside them.
    second = NumberBlock(database, 5)
    assert await second.take() == start + 16
    async with database.transaction() as session:
        seeded = await allocate_number(session)
    assert seeded == start + 21
    assert await first.take() == start + 13  # the first block's rest is still its own


async def test_blocks_are_unique_and_disjoint_on_sqlite(runtime: Runtime) -> None:
    await _check_blocks(runtime.database)


async def test_blocks_are_unique_and_disjoint_on_postgresql(pg_url: str) -> None:
    database = Database(pg_url)
    try:
        await _check_blocks(database)
    finally:
        await database.dispose()


async def test_a_block_of_one_takes_each_number_from_the_database(runtime: Runtime) -> None:
    start = await _counter(runtime.database)
    block = NumberBlock(runtime.database, 1)
    assert [await block.take() for _ in range(3)] == [start + 1, start + 2, start + 3]
    assert await _counter(runtime.database) == start + 3
    assert block.left == 0


def test_an_empty_block_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="at least one"):
        NumberBlock(runtime.database, 0)


async def test_the_runtime_uses_the_configured_block_size(runtime: Runtime) -> None:
    assert runtime.ticket_numbers.size == runtime.settings.ticket_number_block == 20
    start = await _counter(runtime.database)
    assert await runtime.ticket_numbers.take() == start + 1
    assert await _counter(runtime.database) == start + 20
