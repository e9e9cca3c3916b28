"""Fixtures of the analytics tests: a runtime on SQLite and on PostgreSQL, and a timeline
of tickets written through the real writers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from api.app import prepare_runtime
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.settings import Settings
from models.enums import Role
from tests.support.analytics_timeline import Timeline, fresh_postgres, install_clock
from tests.support.factories import make_user


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def rt(
    request: pytest.FixtureRequest, settings: Settings, var_dir: Path
) -> AsyncIterator[Runtime]:
    """A runtime over a migrated SQLite copy, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        runtime = prepare_runtime(build_runtime(settings))
        try:
            yield runtime
        finally:
            await runtime.close()
        return
    async with fresh_postgres() as url:
        # The same settings (a test's overrides included), on PostgreSQL.
        on_postgres = settings.model_copy(update={"database_url": url})
        runtime = prepare_runtime(build_runtime(on_postgres))
        try:
            yield runtime
        finally:
            await runtime.close()


@pytest_asyncio.fixture
async def timeline(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Timeline:
    clock = install_clock(monkeypatch)
    requester = await make_user(rt, Role.END_USER)
    agent = await make_user(rt, Role.SUPPORT_AGENT)
    return Timeline(rt, clock, requester.id, agent.id)
