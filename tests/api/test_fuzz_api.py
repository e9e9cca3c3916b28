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
            log_path = tmp_path / "schemathesis.log"
            log = log_path.open("wb")  # closed once the run ended (or was killed)
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
                f"Authorization: Bearer {admin.token}",
                "--seed",
                "11",
                "--no-color",
                "--warnings",
                "off",
                cwd=tmp_path,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
            )
            try:
                await asyncio.wait_for(process.wait(), HARD_LIMIT_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()
                log.close()
                # What it printed so far, and whether the server still answers: a wedged
                # server and a stuck client read differently.
                async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                    ready = await http.get("/readyz")
                pytest.fail(
                    f"schemathesis did not finish in {HARD_LIMIT_SECONDS} s (readyz "
                    f"{ready.status_code}):\n{log_path.read_text(errors='replace')[-4000:]}"
                )
            log.close()
            took = time.monotonic() - started
            report = log_path.read_text(errors="replace")
            # The watchdog: the database writer is free, the process still serves.
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert process.returncode == 0, f"schemathesis failed after {took:.0f} s:\n{report}"
            print(f"schemathesis: {took:.0f} s\n{report[-3000:]}")
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(serving, 10)
