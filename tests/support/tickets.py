"""Shared pieces of the ticket tests: an API client over the app with a real worker on the
real Temporal dev server (the test's own task queue), and small request helpers."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from temporalio.client import Client

from api.app import create_app
from helpdesk.runtime import Runtime
from tests.support.factories import Actor


@contextlib.asynccontextmanager
async def ticket_api(
    runtime: Runtime, temporal_client: Client, *, worker: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over the ASGI app, with (optionally) a worker running beside it."""
    from workers.worker import build_worker

    runtime.temporal = temporal_client
    app = create_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with contextlib.AsyncExitStack() as stack:
        if worker:
            await stack.enter_async_context(build_worker(temporal_client, runtime))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)
        )
        yield http


async def create_ticket(http: httpx.AsyncClient, actor: Actor, **body: Any) -> dict[str, Any]:
    payload = {"title": "Cannot log in", "description": "Password reset loops", **body}
    response = await http.post("/api/v1/tickets", json=payload, headers=actor.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def set_status(
    http: httpx.AsyncClient, actor: Actor, ticket_id: str | uuid.UUID, status: str, **extra: Any
) -> httpx.Response:
    return await http.post(
        f"/api/v1/tickets/{ticket_id}/status",
        json={"status": status, **extra},
        headers=actor.headers,
    )
