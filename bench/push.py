"""Push benchmark: latency from a change to a Socket.IO client's receipt.

    python -m bench.push [--events 500] [--redis redis://127.0.0.1:6379/7]

Starts the real API (`api.app.create_asgi_app`) under uvicorn on a free loopback port, on a
temporary migrated SQLite database, connects one python-socketio client over WebSocket with
a real access token, then makes one change at a time and times it until the client hears
it (latency, not throughput). Without ``--redis`` the change is a `helpdesk.push.publish` in
the API process (the embedded default: the worker shares the process); with ``--redis`` it
is published by a separate write-only Redis manager, the path a push from a worker process
takes (worker → Redis → API replica → client).

`measure_push_latency` takes the change as a callable, so the full-stack bench can pass
"make a REST call that changes a ticket" and time from the call's return. The last line
printed is one JSON object: ``{"push_p50_ms": ..., "push_p99_ms": ..., ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any, Literal

import socketio
import uvicorn

TARGET_P99_MS = 100.0

# make_change(i) performs change number i and returns the key its event will carry.
MakeChange = Callable[[int], Awaitable[Hashable]]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def measure_push_latency(
    url: str,
    token: str,
    make_change: MakeChange,
    *,
    event: str,
    key_of: Callable[[dict[str, Any]], Hashable] = lambda payload: payload.get("seq"),
    count: int = 500,
    warmup: int = 20,
    clock_from: Literal["call", "return"] = "call",
    event_timeout: float = 5.0,
) -> dict[str, float]:
    """Make `count` changes one after another; for each, the time until a client connected
    to `url` with `token` receives `event` whose `key_of(payload)` is the key the change
    returned. ``clock_from="return"`` starts the clock when `make_change` returns (a REST
    call's return); an event that beat the return counts as 0 ms."""
    arrivals: dict[Hashable, float] = {}
    arrived = asyncio.Event()
    client = socketio.AsyncClient(reconnection=False)

    async def on_event(payload: dict[str, Any]) -> None:
        arrivals[key_of(payload)] = time.perf_counter()
        arrived.set()

    client.on(event, on_event)
    await client.connect(
        url, auth={"token": token}, transports=["websocket"], socketio_path="socket.io"
    )
    latencies: list[float] = []
    try:
        for i in range(warmup + count):
            started = time.perf_counter()
            key = await make_change(i)
            if clock_from == "return":
                started = time.perf_counter()
            deadline = started + event_timeout
            while key not in arrivals:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError(f"change {i}: no {event} event within {event_timeout} s")
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), remaining)
            if i >= warmup:
                latencies.append(max(0.0, arrivals.pop(key) - started) * 1000)
            else:
                arrivals.pop(key)
    finally:
        await client.disconnect()
    return {
        "push_p50_ms": round(statistics.median(latencies), 2),
        "push_p99_ms": round(_percentile(latencies, 0.99), 2),
        "push_max_ms": round(max(latencies), 2),
        "push_events": float(len(latencies)),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _serve(asgi_app: Any) -> AsyncIterator[str]:
    port = _free_port()
    config = uvicorn.Config(
        asgi_app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def run(events: int = 500, redis_url: str | None = None) -> dict[str, Any]:
    """The standalone benchmark: a real API process on loopback and one client."""
    from temporalio.client import Client

    from api.app import create_asgi_app, prepare_runtime
    from helpdesk import push
    from helpdesk.migrate import upgrade_async
    from helpdesk.runtime import build_runtime
    from helpdesk.services import sessions, users
    from helpdesk.settings import Settings
    from helpdesk.temporal import data_converter
    from models.enums import Role

    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        var_dir = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{var_dir / 'helpdesk.db'}"
        await upgrade_async(database_url)
        settings = Settings.model_validate(
            {
                "environment": "test",
                "var_dir": var_dir,
                "database_url": database_url,
                "email_backend": "file",
                "argon2_time_cost": 1,
                "argon2_memory_cost": 8192,
                "run_worker_in_api": False,
                "redis_url": redis_url,
                "push_redis_channel": f"bench-push-{uuid.uuid4().hex}",
            }
        )
        runtime = prepare_runtime(build_runtime(settings))
        async with runtime.database.transaction() as session:
            user = await users.create_user(
                session,
                runtime,
                email="agent@bench.example",
                password=uuid.uuid4().hex,
                role=Role.SUPPORT_AGENT,
            )
            issued = await sessions.start(
                session, runtime, user, mfa=False, ip="127.0.0.1", user_agent="bench"
            )
        # The API wants a Temporal client; a lazy one never dials (nothing here uses it).
        temporal = await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter(settings),
            lazy=True,
        )
        publisher: push.Publisher | None = None
        try:
            asgi = create_asgi_app(runtime=runtime, temporal_client=temporal, run_worker=False)
            async with _serve(asgi) as url:
                room = [push.user_room(user.id)]
                if redis_url:
                    publisher = push.RedisPublisher(push.redis_manager(settings, write_only=True))
                else:
                    publisher = asgi.other_asgi_app.state.sockets.publisher
                chosen = publisher

                async def change(i: int) -> Hashable:
                    await chosen.publish("ticket.updated", {"seq": i}, room)
                    return i

                if redis_url:  # the API's Redis subscription settles asynchronously
                    await asyncio.sleep(0.5)
                figures: dict[str, Any] = dict(
                    await measure_push_latency(
                        url, issued.access_token, change, event="ticket.updated", count=events
                    )
                )
        finally:
            if redis_url and publisher is not None:
                await publisher.aclose()
            await runtime.close()
    figures["push_transport"] = "redis" if redis_url else "in-process"
    figures["push_target_p99_ms"] = TARGET_P99_MS
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--redis", default=os.environ.get("HELPDESK_BENCH_REDIS_URL"))
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.events, args.redis))), flush=True)


if __name__ == "__main__":
    main()
