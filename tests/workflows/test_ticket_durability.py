"""Kill the worker PROCESS during a burst of creations through the API, restart it, and
check that every ticket answered with a 2xx has its row and a running workflow in the right
state, that nothing was created twice, and that a client retrying a failed request with its
Idempotency-Key gets its ticket (nothing half-made is left behind)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus

from helpdesk.rules.transitions import Status
from helpdesk.services import ticket_reconcile
from helpdesk.settings import Settings
from helpdesk.temporal import ticket_workflow_id
from models.enums import Role
from models.ticket import Ticket
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, ticket_api
from workflows.ticket import TicketWorkflow

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def start_worker_process(
    settings: Settings, temporal_address: str, log: Path
) -> subprocess.Popen[bytes]:
    """`helpdesk worker` as its own process, configured through the environment only."""
    env = {
        **os.environ,
        "HELPDESK_ENVIRONMENT": "test",
        "HELPDESK_VAR_DIR": str(settings.var_dir),  # same generated secrets as the test
        "HELPDESK_DATABASE_URL": settings.database_url,
        "HELPDESK_TEMPORAL_ADDRESS": temporal_address,
        "HELPDESK_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "HELPDESK_EMAIL_BACKEND": "file",
        "HELPDESK_AUTO_ASSIGN_ON_CREATE": "false",
    }
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from helpdesk.cli import main; main(['worker'])"],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


async def test_killing_the_worker_mid_burst_loses_no_accepted_ticket(
    runtime, temporal_client, temporal_server, settings, tmp_path
):
    requester = await make_user(runtime, Role.END_USER)
    log = tmp_path / "worker.log"
    first = start_worker_process(settings, temporal_server, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with ticket_api(runtime, temporal_client, worker=False) as http:
            # The worker process is up once a ticket round-trips through it.
            warm = await create_ticket(http, requester, title="warm-up")
            assert warm["workflow"]["status"] == "OPEN"

            keys = [f"burst-{i}-{uuid.uuid4().hex[:6]}" for i in range(48)]
            bodies = {
                k: {"title": f"Burst ticket {i}", "priority": "LOW"} for i, k in enumerate(keys)
            }
            gate = asyncio.Semaphore(16)

            async def post(key: str):
                async with gate:
                    return key, await http.post(
                        "/api/v1/tickets",
                        json=bodies[key],
                        headers={**requester.headers, "Idempotency-Key": key},
                    )

            burst = [asyncio.create_task(post(k)) for k in keys]
            # Let part of the burst through, then kill the worker without warning.
            while sum(t.done() for t in burst) < 8:
                await asyncio.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            in_flight_at_kill = sum(not t.done() for t in burst)
            await asyncio.sleep(1.0)
            second = start_worker_process(settings, temporal_server, log)
            results = dict(await asyncio.gather(*burst))

            # The kill really happened mid-burst: many requests were still waiting on it.
            assert in_flight_at_kill >= 16
            accepted = {k: r.json() for k, r in results.items() if r.status_code == 201}
            print(
                f"in flight at kill: {in_flight_at_kill}; 201: {len(accepted)}; "
                f"refused: {len(results) - len(accepted)}"
            )
            refused = {k: r for k, r in results.items() if r.status_code != 201}
            # Nothing else than 201 or a clean 503/429 with Retry-After.
            for response in refused.values():
                assert response.status_code in (503, 429), response.text
                assert "Retry-After" in response.headers
            assert len(accepted) >= 8
            # A client retries what was refused, with the same key: it gets its ticket.
            for key in refused:
                again = await http.post(
                    "/api/v1/tickets",
                    json=bodies[key],
                    headers={**requester.headers, "Idempotency-Key": key},
                )
                assert again.status_code == 201, again.text
                accepted[key] = again.json()

        # Every accepted ticket: one row, a running workflow, in the right state.
        ids = {uuid.UUID(t["id"]) for t in accepted.values()}
        assert len(ids) == len(keys)  # one ticket per key, none twice
        async with runtime.database.transaction() as session:
            rows = {
                t.id: t for t in await session.scalars(select(Ticket).where(Ticket.id.in_(ids)))
            }
            total = await session.scalar(select(func.count()).select_from(Ticket))
        assert set(rows) == ids
        assert total == len(keys) + 1  # the burst and the warm-up, nothing half-made extra
        for ticket_id in ids:
            handle = temporal_client.get_workflow_handle(ticket_workflow_id(ticket_id))
            description = await handle.describe()
            assert description.status is WorkflowExecutionStatus.RUNNING
            state = await handle.query(TicketWorkflow.state)
            assert state.status is Status.OPEN
            assert state.number == rows[ticket_id].number
        # A reconciliation round changes nothing: no workflow is started a second time.
        runs = {
            i: (await temporal_client.get_workflow_handle(ticket_workflow_id(i)).describe()).run_id
            for i in ids
        }
        await ticket_reconcile.reconcile_workflows(runtime, grace_seconds=0)
        for ticket_id in ids:
            description = await temporal_client.get_workflow_handle(
                ticket_workflow_id(ticket_id)
            ).describe()
            assert description.status is WorkflowExecutionStatus.RUNNING
            assert description.run_id == runs[ticket_id]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
