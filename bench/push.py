"""Push benchmark: latency from a change to a Socket.IO client's receipt.

    python -m bench.push [--mode rest|publish] [--events 500] [--redis redis://...]

``--mode rest`` (the default, what ``make bench`` runs) is the full stack: a real Temporal
dev server (`temporal server start-dev`, in memory, our search attributes) on free loopback
ports, a temporary migrated SQLite database, and the API (`api.app.create_asgi_app`, the
worker hosted in-process) under uvicorn on a free loopback port. A requester creates one
ticket over REST; an agent's python-socketio client connects with a real access token and
joins the ticket room (``join_ticket``); then the agent moves the ticket round
IN_PROGRESS → RESOLVED → OPEN → ... through ``POST /tickets/{id}/status``, one change at a
time, and each change is timed from the moment the REST call returns to the moment the
client receives its ``ticket.status_changed`` push. The push is matched by its
``event_id`` (``<ticket id>:<request id>``, the request id derived from the call's
Idempotency-Key by `helpdesk.services.tickets.command_request_id`). The change's persist
activity publishes the push right after its commit, before the workflow update (and so
the REST call) answers, so the push normally beats the REST response home: those count as
0 ms and are reported as ``push_before_return``; ``push_from_call_p50/p99_ms`` time the
same pushes from the moment the REST call was sent.

On the same server the publish-only figure follows: `helpdesk.push`'s publisher in the API
process → client (``push_publish_*``), the transport alone.

``--mode publish`` runs only the publish-only part, without Temporal (as before; with
``--redis`` the publisher is a separate write-only Redis manager, the path a push from a
worker process takes: worker → Redis → API replica → client).

The last line printed is one JSON object: ``{"push_p50_ms": ..., "push_p99_ms": ..., ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import socketio
import uvicorn

TARGET_P99_MS = 100.0

# make_change(i) performs change number i and returns the key its event will carry.
MakeChange = Callable[[int], Awaitable[Hashable]]
# Called once the client is connected, before the first change (e.g. join a ticket room).
OnConnected = Callable[[socketio.AsyncClient], Awaitable[None]]


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
    on_connected: OnConnected | None = None,
) -> dict[str, float]:
    """Make `count` changes one after another; for each, the time until a client connected
    to `url` with `token` receives `event` whose `key_of(payload)` is the key the change
    returned. ``clock_from="return"`` starts the clock when `make_change` returns (a REST
    call's return); an event that beat the return counts as 0 ms (``push_before_return``
    says how many did). A change whose event never comes within `event_timeout` counts as
    `event_timeout` and in ``push_missed``."""
    arrivals: dict[Hashable, float] = {}
    consumed: set[Hashable] = set()
    arrived = asyncio.Event()
    client = socketio.AsyncClient(reconnection=False)

    async def on_event(payload: dict[str, Any]) -> None:
        key = key_of(payload)
        # The first copy counts: a socket in several target rooms, or a retried activity,
        # may deliver the same event again later.
        if key not in consumed:
            arrivals.setdefault(key, time.perf_counter())
        arrived.set()

    client.on(event, on_event)
    await client.connect(
        url, auth={"token": token}, transports=["websocket"], socketio_path="socket.io"
    )
    latencies: list[float] = []
    from_call: list[float] = []  # the REST call's start → receipt, whatever clock_from says
    before_return = 0
    missed = 0
    try:
        if on_connected is not None:
            await on_connected(client)
        for i in range(warmup + count):
            started = called = time.perf_counter()
            key = await make_change(i)
            if clock_from == "return":
                started = time.perf_counter()
            deadline = started + event_timeout
            while key not in arrivals:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), remaining)
            consumed.add(key)
            received = arrivals.pop(key, None)
            if i < warmup:
                continue
            if received is None:
                missed += 1
                latencies.append(event_timeout * 1000)
                continue
            if received < started:
                before_return += 1
            latencies.append(max(0.0, received - started) * 1000)
            from_call.append((received - called) * 1000)
    finally:
        await client.disconnect()
    return {
        "push_p50_ms": round(statistics.median(latencies), 2),
        "push_p99_ms": round(_percentile(latencies, 0.99), 2),
        "push_max_ms": round(max(latencies), 2),
        "push_events": float(len(latencies)),
        "push_before_return": float(before_return),
        "push_missed": float(missed),
        # From the start of the change (the REST call sent) to the client's receipt.
        "push_from_call_p50_ms": round(statistics.median(from_call), 2) if from_call else -1,
        "push_from_call_p99_ms": round(_percentile(from_call, 0.99), 2) if from_call else -1,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _serve(asgi_app: Any) -> AsyncIterator[str]:
    port = _free_port()
    config = uvicorn.Config(
        asgi_app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _settings(var_dir: Path, database_url: str, **extra: Any) -> Any:
    from helpdesk.settings import Settings

    return Settings.model_validate(
        {
            "environment": "test",
            "var_dir": var_dir,
            "database_url": database_url,
            "email_backend": "file",
            "argon2_time_cost": 1,
            "argon2_memory_cost": 8192,
            "access_token_ttl_seconds": 900,
            "session_idle_timeout_seconds": 3600,
            **extra,
        }
    )


async def _user_with_session(runtime: Any, role: Any, label: str) -> tuple[uuid.UUID, str]:
    """A user made through the real services and an access token (no MFA needed)."""
    from helpdesk.services import sessions, users

    async with runtime.database.transaction() as session:
        user = await users.create_user(
            session,
            runtime,
            email=f"{label}-{uuid.uuid4().hex[:8]}@bench.example",
            password=uuid.uuid4().hex,
            full_name=f"Bench {label}",
            role=role,
            email_verified_at=datetime.now(UTC),  # the API refuses unverified accounts
        )
        issued = await sessions.start(
            session, runtime, user, mfa=False, ip="127.0.0.1", user_agent="bench"
        )
    return user.id, issued.access_token


async def _publish_only(
    url: str, publisher: Any, user_id: uuid.UUID, token: str, events: int
) -> dict[str, float]:
    """`helpdesk.push`'s publisher → client: the transport alone."""
    from helpdesk import push

    room = [push.user_room(user_id)]

    async def change(i: int) -> Hashable:
        await publisher.publish("ticket.updated", {"seq": i}, room)
        return i

    return await measure_push_latency(url, token, change, event="ticket.updated", count=events)


def _renamed(figures: dict[str, float], prefix: str) -> dict[str, float]:
    return {key.replace("push_", prefix, 1): value for key, value in figures.items()}


@contextlib.asynccontextmanager
async def _temporal_dev_server(log_path: Path) -> AsyncIterator[str]:
    """`temporal server start-dev` in memory on free loopback ports, our search attributes
    registered; yields its address, stops it on exit."""
    from helpdesk.devserver import temporal_binary
    from helpdesk.temporal import search_attribute_cli_args

    port = _free_port()
    args = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(_free_port()),
        "--metrics-port",
        str(_free_port()),
        "--headless",
        *search_attribute_cli_args(),
    ]
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=log)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _connect_when_ready(settings: Any, address: str, within_s: float = 60.0) -> Any:
    from helpdesk.temporal import connect

    deadline = time.monotonic() + within_s
    while True:
        try:
            return await connect(settings, address=address)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def run_rest(events: int = 500) -> dict[str, Any]:
    """The full-stack benchmark: REST call's return → the agent's client hears the push."""
    import httpx

    from api.app import create_asgi_app, prepare_runtime
    from helpdesk.migrate import upgrade_async
    from helpdesk.runtime import build_runtime
    from helpdesk.services.tickets import command_request_id
    from models.enums import Role

    cycle = ("IN_PROGRESS", "RESOLVED", "OPEN")  # RESOLVED → OPEN is the reopen edge
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        var_dir = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{var_dir / 'helpdesk.db'}"
        await upgrade_async(database_url)
        async with _temporal_dev_server(var_dir / "temporal.log") as address:
            settings = _settings(
                var_dir,
                database_url,
                temporal_address=address,
                temporal_task_queue=f"bench-push-{uuid.uuid4().hex[:8]}",
                run_worker_in_api=True,
            )
            temporal = await _connect_when_ready(settings, address)
            runtime = prepare_runtime(build_runtime(settings))
            runtime.temporal = temporal
            try:
                agent_id, agent_token = await _user_with_session(
                    runtime, Role.SUPPORT_AGENT, "agent"
                )
                _requester_id, requester_token = await _user_with_session(
                    runtime, Role.END_USER, "requester"
                )
                asgi = create_asgi_app(runtime=runtime, temporal_client=temporal, run_worker=True)
                async with (
                    _serve(asgi) as url,
                    httpx.AsyncClient(base_url=url, timeout=60) as http,
                ):
                    created = await http.post(
                        "/api/v1/tickets",
                        json={"title": "Bench ticket", "description": "Push latency"},
                        headers={"Authorization": f"Bearer {requester_token}"},
                    )
                    if created.status_code != 201:
                        raise RuntimeError(f"create answered {created.status_code}")
                    ticket_id = created.json()["id"]
                    agent_headers = {"Authorization": f"Bearer {agent_token}"}

                    async def join(client: socketio.AsyncClient) -> None:
                        ack = await client.call("join_ticket", {"ticket_id": ticket_id}, timeout=10)
                        if not (isinstance(ack, dict) and ack.get("ok")):
                            raise RuntimeError(f"join_ticket refused: {ack}")

                    async def change(i: int) -> Hashable:
                        key = f"bench-push-{i}-{uuid.uuid4().hex[:8]}"
                        response = await http.post(
                            f"/api/v1/tickets/{ticket_id}/status",
                            json={"status": cycle[i % len(cycle)]},
                            headers={**agent_headers, "Idempotency-Key": key},
                        )
                        if response.status_code != 200:
                            raise RuntimeError(
                                f"status change {i} answered {response.status_code}: "
                                f"{response.json().get('error', {}).get('code')}"
                            )
                        return f"{ticket_id}:{command_request_id(agent_id, key)}"

                    load_before = os.getloadavg()[0]
                    started = time.perf_counter()
                    rest = await measure_push_latency(
                        url,
                        agent_token,
                        change,
                        event="ticket.status_changed",
                        key_of=lambda payload: payload.get("event_id"),
                        count=events,
                        clock_from="return",
                        event_timeout=30.0,
                        on_connected=join,
                    )
                    figures.update(rest)
                    figures["push_rest_seconds"] = round(time.perf_counter() - started, 1)
                    figures["push_load_during"] = round(max(load_before, os.getloadavg()[0]), 2)
                    publisher = asgi.other_asgi_app.state.sockets.publisher
                    figures.update(
                        _renamed(
                            await _publish_only(url, publisher, agent_id, agent_token, events),
                            "push_publish_",
                        )
                    )
            finally:
                await runtime.close()
    figures["push_mode"] = "rest"
    figures["push_transport"] = "in-process"
    figures["push_target_p99_ms"] = TARGET_P99_MS
    figures["push_target_met"] = figures["push_p99_ms"] <= TARGET_P99_MS
    return figures


async def run(events: int = 500, redis_url: str | None = None) -> dict[str, Any]:
    """The publish-only benchmark: a real API process on loopback and one client; the change
    is a publish in this process (or through Redis with `redis_url`). No Temporal."""
    from temporalio.client import Client

    from api.app import create_asgi_app, prepare_runtime
    from helpdesk import push
    from helpdesk.migrate import upgrade_async
    from helpdesk.runtime import build_runtime
    from helpdesk.temporal import data_converter
    from models.enums import Role

    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        var_dir = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{var_dir / 'helpdesk.db'}"
        await upgrade_async(database_url)
        settings = _settings(
            var_dir,
            database_url,
            run_worker_in_api=False,
            redis_url=redis_url,
            push_redis_channel=f"bench-push-{uuid.uuid4().hex}",
        )
        runtime = prepare_runtime(build_runtime(settings))
        user_id, token = await _user_with_session(runtime, Role.SUPPORT_AGENT, "agent")
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
                if redis_url:
                    publisher = push.RedisPublisher(push.redis_manager(settings, write_only=True))
                    await asyncio.sleep(0.5)  # the API's Redis subscription settles async
                else:
                    publisher = asgi.other_asgi_app.state.sockets.publisher
                figures: dict[str, Any] = _renamed(
                    await _publish_only(url, publisher, user_id, token, events), "push_publish_"
                )
        finally:
            if redis_url and publisher is not None:
                await publisher.aclose()
            await runtime.close()
    figures["push_mode"] = "publish"
    figures["push_transport"] = "redis" if redis_url else "in-process"
    figures["push_target_p99_ms"] = TARGET_P99_MS
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("rest", "publish"), default="rest")
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--redis", default=os.environ.get("HELPDESK_BENCH_REDIS_URL"))
    args = parser.parse_args()
    if args.mode == "rest":
        figures = asyncio.run(run_rest(args.events))
    else:
        figures = asyncio.run(run(args.events, args.redis))
    figures["push_load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures, sort_keys=True), flush=True)
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: skip the interpreter finalisation that can crash


if __name__ == "__main__":
    main()
