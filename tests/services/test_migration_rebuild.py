"""Upgrading a database that holds tickets across 0009 (whose pair, tag and backlog cells
start empty) rebuilds the analytics right after the migrations: no manual step, and no
two-dimension figure read from empty cells; across 0010 the hourly pair cells go and the
daily ones stay. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from helpdesk.analytics import rebuild as analytics_rebuild
from helpdesk.migrate import REBUILD_DUE, downgrade, upgrade_async
from helpdesk.runtime import Runtime
from models.analytics import AnalyticsRollup
from tests.support.analytics_timeline import START, Timeline, rollup_snapshot


async def _pair_cells(rt: Runtime) -> int:
    async with rt.database.read() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM analytics_rollups WHERE dim LIKE '%+%'")
        )
    return int(count or 0)


async def _marker(rt: Runtime) -> int | None:
    async with rt.database.read() as session:
        value = await session.scalar(
            text("SELECT value FROM counters WHERE name = :n"), {"n": REBUILD_DUE}
        )
    return None if value is None else int(value)


async def test_an_upgrade_across_0009_rebuilds_the_new_cells(
    rt: Runtime, timeline: Timeline
) -> None:
    for priority in ("HIGH", "HIGH", "LOW"):
        ticket = await timeline.create(priority=priority)
        await timeline.assign(ticket)
    written_cells, _ = await rollup_snapshot(rt)
    assert await _pair_cells(rt) > 0

    url = rt.settings.database_url
    await rt.database.dispose()
    # Back to 0008: the pair cells go, the facts and one-dimension cells stay.
    await asyncio.to_thread(downgrade, url, "0008", settings=rt.settings)
    assert await _pair_cells(rt) == 0

    await upgrade_async(url, settings=rt.settings)
    assert await _marker(rt) is None  # done, and not done again by the next upgrade
    upgraded_cells, _ = await rollup_snapshot(rt)
    assert upgraded_cells == written_cells  # what the writers had kept, pairs included

    async with rt.database.transaction() as session:
        await analytics_rebuild.rebuild(session)
    assert (await rollup_snapshot(rt))[0] == upgraded_cells


async def test_an_upgrade_across_0010_keeps_the_pairs_daily_cells_only(
    rt: Runtime, timeline: Timeline
) -> None:
    ticket = await timeline.create(priority="HIGH")
    await timeline.assign(ticket)
    written_cells, _ = await rollup_snapshot(rt)
    pairs = {dim for dim, _, _ in written_cells if "+" in dim}
    assert pairs and all(dim.endswith("@d") for dim in pairs)  # the writers keep days only

    url = rt.settings.database_url
    await rt.database.dispose()
    await asyncio.to_thread(downgrade, url, "0009", settings=rt.settings)
    assert await _marker(rt) == 1  # 0009's readers need hourly pair cells: rebuild due
    # What 0009's writers kept besides the daily cells: an hourly cell per pair value.
    async with rt.database.transaction() as session:
        await session.execute(text("DELETE FROM counters WHERE name = :n"), {"n": REBUILD_DUE})
        session.add(
            AnalyticsRollup(dim="priority+assignee", hour=START, value="HIGH|none", metrics={})
        )
    assert await _pair_cells(rt) == len({k for k in written_cells if "+" in k[0]}) + 1

    await upgrade_async(url, settings=rt.settings)
    assert await _marker(rt) is None
    assert (await rollup_snapshot(rt))[0] == written_cells


async def test_an_empty_database_is_not_marked(rt: Runtime) -> None:
    await rt.database.dispose()
    await upgrade_async(rt.settings.database_url, settings=rt.settings)
    assert await _marker(rt) is None
