"""Schemathesis against the live app (issue 11): uvicorn on a free port, a real worker on
the real Temporal dev server, an administrator's MFA session, the coverage and stateful
phases over the SLA configuration endpoints together with the ticket, comment and
attachment endpoints, two workers at once. Any 5xx or a request that does not answer
(the wedge) fails the test, and /readyz must still answer 200 within a few seconds at the
end. Bounded: a few examples per operation and a time budget (about 2-3 minutes here)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_asgi_app
from models.enums import Role
from tests.conftest import free_port
from tests.support.factories import make_user

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

# The endpoints of issue 11's run: SLA configuration, tickets, comments, attachments.
PATHS = (
    r"^/api/v1/(sla-policies|escalation-rules|business-calendars)(/.*)?$"
    r"|^/api/v1/tickets(/.*)?$|^/api/v1/comments(/.*)?$|^/api/v1/attachments(/.*)?$"
)
BUDGET_SECONDS = 120  # schemathesis' own --max-time
HARD_LIMIT_SECONDS = 240  # past this the run is killed and the test fails (a hang)


def _client_env() -> dict[str, str]:
    """Schemathesis' environment, without coverage's subprocess measurement: it is a client,
    and tracing it (with the suite's thread and greenlet concurrency) made it about three
    times slower, and stalled it past the hard limit in two fresh-clone CI runs."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COVERAGE", "COV_CORE"))
    }
    env["SCHEMATHESIS_HOOKS"] = ""
    return env


async def _schemathesis(log_path: Path, token: str, base: str) -> tuple[int | None, str]:
    """One schemathesis run: its exit code (None when killed at the hard limit), its output."""
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{base}/api/v1/openapi.json",
            "--url",
            base,
            "--phases",
            "coverage,stateful",
            "--checks",
            "not_a_server_error",
            "--workers",
            "2",
            "--max-examples",
            "8",
            "--max-time",
            str(BUDGET_SECONDS),
            "--request-timeout",
            "20",
            "--include-path-regex",
            PATHS,
            "--header",
            f"Authorization: Bearer {token}",
            "--seed",
            "11",
            "--no-color",
            "--warnings",
            "off",
            cwd=log_path.parent,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=_client_env(),
        )
        try:
            code: int | None = await asyncio.wait_for(process.wait(), HARD_LIMIT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            code = None
    return code, log_path.read_text(errors="replace")


@pytest.mark.parametrize(
    "settings",
    # The fuzzer creates many tickets quickly: per-user limits must not turn it into 429s.
    [{"auto_assign_on_create": True}],
    indirect=True,
)
async def test_schemathesis_finds_no_server_error_and_no_wedge(
    runtime, temporal_client, tmp_path: Path
):
    from workers.worker import build_worker

    admin = await make_user(runtime, Role.ADMINISTRATOR)
    await make_user(runtime, Role.SUPPORT_AGENT)
    runtime.temporal = temporal_client
    app = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    base = f"http://127.0.0.1:{port}"
    async with build_worker(temporal_client, runtime):
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            started = time.monotonic()
            # A stalled client (the server still answering /readyz) is run once more: two
            # fresh-clone CI runs saw schemathesis stop before its coverage phase while the
            # server answered, which no run here reproduced. A wedged server fails at once.
            for attempt in (1, 2):
                code, report = await _schemathesis(
                    tmp_path / f"run-{attempt}.log", admin.token, base
                )
                if code is not None:
                    break
                async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                    ready = await http.get("/readyz")
                assert ready.status_code == 200, f"the server is wedged:\n{report[-4000:]}"
                print(f"schemathesis stalled (attempt {attempt}), server ready:\n{report[-2000:]}")
            else:
                pytest.fail(
                    f"schemathesis stalled twice in {HARD_LIMIT_SECONDS} s:\n{report[-4000:]}"
                )
            took = time.monotonic() - started
            # The watchdog: the database writer is free, the process still serves.
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert code == 0, f"schemathesis failed after {took:.0f} s:\n{report}"
            print(f"schemathesis: {took:.0f} s\n{report[-3000:]}")
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(serving, 10)
