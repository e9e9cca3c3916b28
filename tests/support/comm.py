"""Helpers for the communication tests and the push benchmark: a real uvicorn server on a
free port serving `api.app.create_asgi_app`, a python-socketio client that records events,
and a ticket row with sealed (PHI) text made without the ticket workflow."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import socketio
import uvicorn

from helpdesk.runtime import Runtime
from helpdesk.services import ticket_text
from models.ticket import Ticket

_numbers = itertools.count(700_000 + uuid.uuid4().int % 100_000)


async def insert_ticket(
    runtime: Runtime, requester_id: uuid.UUID, title: str = "Ticket title"
) -> Ticket:
    """A ticket row whose title and description are sealed under its own data key."""
    async with runtime.database.transaction() as session:
        key = await runtime.keys.create(session)
        ticket_id = uuid.uuid4()
        ticket = Ticket(
            id=ticket_id,
            number=next(_numbers),
            data_key_id=key.key_id,
            title_enc=ticket_text.seal(key, ticket_id, "title", title),
            description_enc=ticket_text.seal(key, ticket_id, "description", title + " body"),
            requester_id=requester_id,
        )
        session.add(ticket)
    return ticket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    app: Any  # the FastAPI app (its .state.sockets is the Socket.IO side)
    server: uvicorn.Server


@contextlib.asynccontextmanager
async def serve(asgi_app: Any, fastapi_app: Any) -> AsyncIterator[RunningServer]:
    """uvicorn in a task of the current loop, lifespan on; stopped on exit."""
    port = free_port()
    config = uvicorn.Config(
        asgi_app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    # Leave the process's signal handlers alone (several servers may run at once).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if not server.started:
        task.cancel()
        raise RuntimeError("uvicorn did not start")
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", fastapi_app, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


@dataclass
class Listener:
    """A connected client and every event it received, in order."""

    client: socketio.AsyncClient
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(
        self, event: str, predicate: Any = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first received `event` whose payload satisfies `predicate`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for name, payload in self.events:
                if name == event and (predicate is None or predicate(payload)):
                    return payload
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no {event} event within {timeout} s")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    async def close(self) -> None:
        if self.client.connected:
            await self.client.disconnect()


async def connect(url: str, token: str | None, events: list[str]) -> Listener:
    """A python-socketio client over WebSocket, authenticated with `token`."""
    client = socketio.AsyncClient(reconnection=False)
    listener = Listener(client)

    def handler_for(name: str) -> Any:
        async def handler(payload: dict[str, Any]) -> None:
            listener.events.append((name, payload))
            listener.arrived.set()

        return handler

    for name in events:
        client.on(name, handler_for(name))

    async def on_disconnect(*_args: Any) -> None:
        listener.disconnected.set()

    client.on("disconnect", on_disconnect)
    await client.connect(
        url,
        auth={"token": token} if token is not None else None,
        transports=["websocket"],
        socketio_path="socket.io",
        wait_timeout=5,
    )
    return listener
