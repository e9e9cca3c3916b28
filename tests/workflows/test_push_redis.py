"""Fan-out across API replicas through the local Redis (127.0.0.1:6379).

Two uvicorn servers, each its own app and runtime (as two processes would be), share the
database and `redis_url`; a write-only manager stands in for a worker process. A unique
channel per test keeps parallel runs apart (Redis pub/sub channels ignore the db number)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.notifications import NotificationActivities, PushInput
from api.app import create_asgi_app, prepare_runtime
from helpdesk import push
from helpdesk.rules.notify import PushEvent
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services import sessions
from helpdesk.settings import Settings
from models.enums import Role
from models.user import AuthSession
from tests.support.comm import Listener, RunningServer, connect, insert_ticket, serve
from tests.support.factories import make_user

REDIS_DB = 7


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not redis_answers(), reason="Redis is not answering on 127.0.0.1:6379; fan-out tests skipped"
)


@pytest.fixture
def redis_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "push_redis_channel": f"helpdesk-test-{uuid.uuid4().hex}",
        }
    )


@pytest_asyncio.fixture
async def replicas(
    redis_settings: Settings, temporal_client: object
) -> AsyncIterator[list[tuple[RunningServer, Runtime]]]:
    """Two API replicas, each with its own runtime and Socket.IO server."""
    async with AsyncExitStack() as stack:
        running = []
        for _ in range(2):
            runtime = prepare_runtime(build_runtime(redis_settings))
            stack.push_async_callback(runtime.close)
            asgi = create_asgi_app(
                runtime=runtime, temporal_client=temporal_client, run_worker=False
            )
            server = await stack.enter_async_context(serve(asgi, asgi.other_asgi_app))
            running.append((server, runtime))
        yield running


async def _until_heard(listener: Listener, publish_probe: object) -> None:
    """Redis subscriptions settle asynchronously after start-up: probe until one arrives."""
    for attempt in range(50):
        await publish_probe(attempt)  # type: ignore[operator]
        try:
            await listener.wait_for("probe", timeout=0.2)
            return
        except TimeoutError:
            continue
    raise TimeoutError("the replica never heard the probe through Redis")


async def test_a_push_from_a_worker_or_the_other_replica_reaches_a_client_of_replica_one(
    replicas: list[tuple[RunningServer, Runtime]], redis_settings: Settings
) -> None:
    (server_one, runtime_one), (_server_two, runtime_two) = replicas
    requester = await make_user(runtime_one)
    ticket = await insert_ticket(runtime_one, requester.id)
    listener = await connect(
        server_one.url, requester.token, ["probe", *[e.value for e in PushEvent]]
    )
    worker = push.RedisPublisher(push.redis_manager(redis_settings, write_only=True))
    try:
        room = [push.user_room(requester.id)]
        await _until_heard(listener, lambda i: worker.publish("probe", {"i": i}, room))

        # From a worker process: a write-only manager, no Socket.IO server.
        await worker.publish(
            "ticket.assigned", {"ticket_id": str(ticket.id), "via": "worker"}, room
        )
        assert (await listener.wait_for("ticket.assigned"))["via"] == "worker"

        # From the other replica: its push activity goes through its own server's manager.
        rooms = await ActivityEnvironment().run(
            NotificationActivities(runtime_two).publish_event,
            PushInput(event=PushEvent.TICKET_CREATED, event_id="created-1", ticket_id=ticket.id),
        )
        assert push.user_room(requester.id) in rooms
        payload = await listener.wait_for("ticket.created")
        assert payload["event_id"] == "created-1" and payload["number"] == ticket.number
    finally:
        await listener.close()
        await worker.aclose()


async def test_revoking_a_session_on_one_replica_drops_its_socket_on_the_other(
    replicas: list[tuple[RunningServer, Runtime]], redis_settings: Settings
) -> None:
    (server_one, runtime_one), (_server_two, runtime_two) = replicas
    agent = await make_user(runtime_one, Role.SUPPORT_AGENT)
    bystander = await make_user(runtime_one, Role.SUPPORT_AGENT)
    listener = await connect(server_one.url, agent.token, ["probe"])
    other = await connect(server_one.url, bystander.token, ["probe"])
    worker = push.RedisPublisher(push.redis_manager(redis_settings, write_only=True))
    try:
        await _until_heard(
            listener, lambda i: worker.publish("probe", {"i": i}, [push.user_room(agent.id)])
        )
        # The revocation happens in replica two's process (its runtime's hook).
        async with runtime_two.database.transaction() as session:
            auth_session = await session.get(AuthSession, agent.session_id)
            assert auth_session is not None
            await sessions.revoke(session, runtime_two, auth_session, "logout")
        await asyncio.wait_for(listener.disconnected.wait(), timeout=5)
        await asyncio.sleep(0.2)
        assert other.client.connected
    finally:
        await listener.close()
        await other.close()
        await worker.aclose()
