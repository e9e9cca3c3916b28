"""Load shedding answers at once (issue 11: past HELPDESK_TICKET_CREATE_MAX_IN_FLIGHT the
503 came back after 738 ms at p50): the refusal is decided from method and path before the
body is read, the caller authenticated or the database asked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import ticket_api

pytestmark = pytest.mark.temporal

LIMIT = 3


async def _slow_body() -> AsyncIterator[bytes]:
    """A client still uploading: the body arrives after 3 s."""
    await asyncio.sleep(3)
    yield b'{"title": "late"}'


@pytest.mark.parametrize(
    "settings",
    [{"ticket_create_max_in_flight": LIMIT, "ticket_command_timeout_seconds": 6}],
    indirect=True,
)
async def test_a_shed_creation_answers_within_100_ms(runtime, temporal_client):
    requester = await make_user(runtime, Role.END_USER)
    # No worker: each admitted creation waits on its workflow, holding its slot.
    async with ticket_api(runtime, temporal_client, worker=False) as http:
        # The first answer of a process builds the metrics' route table (once, ~0.7 s).
        assert (await http.get("/api/v1/tickets", headers=requester.headers)).status_code == 200
        held = [
            asyncio.create_task(
                http.post("/api/v1/tickets", json={"title": f"held {i}"}, headers=requester.headers)
            )
            for i in range(LIMIT)
        ]
        await asyncio.sleep(1.0)  # all of them are admitted and waiting
        assert not any(task.done() for task in held)

        timings = []
        for attempt in range(5):
            started = time.perf_counter()
            if attempt % 2:
                shed = await http.post(
                    "/api/v1/tickets",
                    content=_slow_body(),
                    headers={**requester.headers, "Content-Type": "application/json"},
                )
            else:
                shed = await http.post(
                    "/api/v1/tickets", json={"title": "x"}, headers={"Authorization": "Bearer x"}
                )
            timings.append(time.perf_counter() - started)
            assert shed.status_code == 503, shed.text
            assert shed.headers["Retry-After"] == "1"
            assert shed.json()["error"]["code"] == "unavailable"
        assert max(timings) < 0.1, timings

        # A read is not shed.
        assert (await http.get("/api/v1/tickets", headers=requester.headers)).status_code == 200
        for answer in await asyncio.gather(*held):
            assert answer.status_code == 503  # the engine never answered: its own 503
