"""Socket.IO: real python-socketio clients against a real uvicorn serving the API.

Authentication on connect, revocation and idle logoff dropping live sockets, ticket rooms
guarded by the access policy, internal notes reaching staff only, and the push activity."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import pytest_asyncio
import socketio
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.notifications import NotificationActivities, PushInput
from api.app import create_asgi_app
from helpdesk import push
from helpdesk.rules.notify import PushEvent
from helpdesk.runtime import Runtime
from helpdesk.security import AccessTokens
from helpdesk.services import sessions
from models.audit import AuditLog
from models.enums import Role, TicketStatus
from models.user import AuthSession
from tests.support.comm import RunningServer, connect, insert_ticket, serve
from tests.support.factories import make_user

ALL_EVENTS = [event.value for event in PushEvent]


@pytest_asyncio.fixture
async def api_server(runtime: Runtime, temporal_client: object) -> AsyncIterator[RunningServer]:
    asgi = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    async with serve(asgi, asgi.other_asgi_app) as running:
        yield running


async def test_client_with_a_token_receives_events_published_to_its_rooms(
    runtime: Runtime, api_server: RunningServer
) -> None:
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    manager = await make_user(runtime, Role.MANAGER)
    listener = await connect(api_server.url, agent.token, ALL_EVENTS)
    boss = await connect(api_server.url, manager.token, ALL_EVENTS)
    try:
        ticket_id = str(uuid.uuid4())
        await push.publish("ticket.created", {"ticket_id": ticket_id}, [push.AGENTS])
        assert await listener.wait_for("ticket.created") == {"ticket_id": ticket_id}
        await push.publish("sla.breach", {"ticket_id": ticket_id}, [push.MANAGERS])
        assert await boss.wait_for("sla.breach") == {"ticket_id": ticket_id}
        await push.publish("ticket.updated", {"n": 1}, [push.user_room(agent.id)])
        await listener.wait_for("ticket.updated")
        await asyncio.sleep(0.2)
        assert "sla.breach" not in listener.names()  # agents are not in `managers`
        assert "ticket.updated" not in boss.names()
    finally:
        await listener.close()
        await boss.close()


async def test_bad_missing_and_revoked_tokens_are_refused(
    runtime: Runtime, api_server: RunningServer
) -> None:
    user = await make_user(runtime)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(api_server.url, None, [])
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(api_server.url, user.token + "x", [])
    other_key = runtime.settings.model_copy(
        update={"jwt_secret": SecretStr("a-different-secret-" * 3)}
    )
    forged = AccessTokens(other_key).issue(user.id, user.session_id, user.user.role, False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(api_server.url, forged, [])
    async with runtime.database.transaction() as session:
        auth_session = await session.get(AuthSession, user.session_id)
        assert auth_session is not None
        await sessions.revoke(session, runtime, auth_session, "logout")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(api_server.url, user.token, [])


async def test_expired_token_and_expired_session_are_refused(
    runtime: Runtime, api_server: RunningServer
) -> None:
    user = await make_user(runtime)
    key = runtime.settings.secret_bytes("jwt_secret")
    claims = jwt.decode(user.token, options={"verify_signature": False})
    claims.update(iat=claims["iat"] - 3600, exp=claims["exp"] - 3600)
    expired = jwt.encode(claims, key, algorithm="HS256")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(api_server.url, expired, [])
    async with runtime.database.transaction() as session:
        auth_session = await session.get(AuthSession, user.session_id)
        assert auth_session is not None
        auth_session.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(api_server.url, user.token, [])


async def test_revoking_the_session_disconnects_its_live_socket(
    runtime: Runtime, api_server: RunningServer
) -> None:
    user = await make_user(runtime)
    listener = await connect(api_server.url, user.token, ALL_EVENTS)
    assert listener.client.connected
    async with runtime.database.transaction() as session:
        auth_session = await session.get(AuthSession, user.session_id)
        assert auth_session is not None
        await sessions.revoke(session, runtime, auth_session, "logout")
    await asyncio.wait_for(listener.disconnected.wait(), timeout=5)
    assert not listener.client.connected


async def test_idle_session_is_dropped_by_the_periodic_check(
    runtime: Runtime, api_server: RunningServer
) -> None:
    idle = await make_user(runtime)
    active = await make_user(runtime)
    idle_socket = await connect(api_server.url, idle.token, ALL_EVENTS)
    active_socket = await connect(api_server.url, active.token, ALL_EVENTS)
    try:
        past = datetime.now(UTC) - timedelta(
            seconds=runtime.settings.session_idle_timeout_seconds + 5
        )
        async with runtime.database.transaction() as session:
            auth_session = await session.get(AuthSession, idle.session_id)
            assert auth_session is not None
            auth_session.last_seen_at = past
        dropped = await api_server.app.state.sockets.check_sessions()
        assert dropped == 1
        await asyncio.wait_for(idle_socket.disconnected.wait(), timeout=5)
        assert active_socket.client.connected
    finally:
        await active_socket.close()


async def test_end_user_cannot_join_others_ticket_nor_staff_room_and_never_hears_internal(
    runtime: Runtime, api_server: RunningServer
) -> None:
    alice = await make_user(runtime)
    bob = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    alice_ticket = await insert_ticket(runtime, alice.id)
    bob_ticket = await insert_ticket(runtime, bob.id)
    alice_socket = await connect(api_server.url, alice.token, ALL_EVENTS)
    agent_socket = await connect(api_server.url, agent.token, ALL_EVENTS)
    try:
        call = alice_socket.client.call
        assert await call("join_ticket", {"ticket_id": str(bob_ticket.id)}, timeout=5) == {
            "ok": False,
            "error": "not_found",
        }
        assert await call(
            "join_ticket", {"ticket_id": str(alice_ticket.id), "staff": True}, timeout=5
        ) == {"ok": False, "error": "forbidden"}
        assert await call("join_ticket", {"ticket_id": "nope"}, timeout=5) == {
            "ok": False,
            "error": "invalid",
        }
        joined = await call("join_ticket", {"ticket_id": str(alice_ticket.id)}, timeout=5)
        assert joined == {"ok": True, "rooms": [push.ticket_room(alice_ticket.id)]}
        staff_join = await agent_socket.client.call(
            "join_ticket", {"ticket_id": str(alice_ticket.id)}, timeout=5
        )
        assert staff_join["rooms"] == [
            push.ticket_room(alice_ticket.id),
            push.ticket_staff_room(alice_ticket.id),
        ]

        activities = NotificationActivities(runtime)
        env = ActivityEnvironment()
        internal_id, public_id = uuid.uuid4(), uuid.uuid4()
        rooms = await env.run(
            activities.publish_event,
            PushInput(
                event=PushEvent.COMMENT_ADDED,
                event_id="c-internal",
                ticket_id=alice_ticket.id,
                comment_id=internal_id,
                internal=True,
            ),
        )
        assert push.ticket_room(alice_ticket.id) not in rooms
        assert push.user_room(alice.id) not in rooms
        await env.run(
            activities.publish_event,
            PushInput(
                event=PushEvent.COMMENT_ADDED,
                event_id="c-public",
                ticket_id=alice_ticket.id,
                comment_id=public_id,
            ),
        )
        # Events of bob's ticket never reach alice, whatever room she tried.
        await push.publish(
            "ticket.updated",
            {"ticket_id": str(bob_ticket.id)},
            push.rooms_for(PushEvent.TICKET_UPDATED, ticket_id=bob_ticket.id, requester_id=bob.id),
        )
        heard = await agent_socket.wait_for(
            "comment.added", lambda p: p["comment_id"] == str(internal_id)
        )
        assert heard["internal"] is True and heard["number"] == alice_ticket.number
        await agent_socket.wait_for("comment.added", lambda p: p["comment_id"] == str(public_id))
        await agent_socket.wait_for("ticket.updated")
        public = await alice_socket.wait_for("comment.added")
        assert public == {
            "event_id": "c-public",
            "ticket_id": str(alice_ticket.id),
            "number": alice_ticket.number,
            "comment_id": str(public_id),
            "internal": False,
            "at": public["at"],
        }
        await asyncio.sleep(0.2)
        assert alice_socket.names() == ["comment.added"]  # one event: the public comment
    finally:
        await alice_socket.close()
        await agent_socket.close()
    async with runtime.database.transaction() as session:
        denied = list(
            await session.scalars(
                select(AuditLog).where(
                    AuditLog.action == "socket.join_ticket", AuditLog.outcome == "denied"
                )
            )
        )
    assert {row.details["why"] for row in denied} == {"not_found", "forbidden"}
    assert all(row.actor_id == alice.id for row in denied)


async def test_status_change_event_reaches_requester_and_agents(
    runtime: Runtime, api_server: RunningServer
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket = await insert_ticket(runtime, requester.id)
    requester_socket = await connect(api_server.url, requester.token, ALL_EVENTS)
    agent_socket = await connect(api_server.url, agent.token, ALL_EVENTS)
    try:
        await ActivityEnvironment().run(
            NotificationActivities(runtime).publish_event,
            PushInput(
                event=PushEvent.TICKET_STATUS_CHANGED,
                event_id="s-1",
                ticket_id=ticket.id,
                status=TicketStatus.IN_PROGRESS,
                previous_status=TicketStatus.OPEN,
            ),
        )
        for listener in (requester_socket, agent_socket):
            payload = await listener.wait_for("ticket.status_changed")
            assert payload["status"] == "IN_PROGRESS"
            assert payload["previous_status"] == "OPEN"
            assert payload["number"] == ticket.number
    finally:
        await requester_socket.close()
        await agent_socket.close()


def test_rooms_keep_staff_only_events_away_from_end_user_rooms() -> None:
    ticket_id, requester, agent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for event in PushEvent:
        if event in push.ATTACHMENT_EVENTS:
            continue  # rooms follow the attachment: test_attachment_verdict_rooms
        for internal in (False, True):
            rooms = push.rooms_for(
                event,
                ticket_id=ticket_id,
                requester_id=requester,
                assignee_id=agent,
                internal=internal,
            )
            staff_only = internal or event in (
                PushEvent.TICKET_ESCALATED,
                PushEvent.SLA_WARNING,
                PushEvent.SLA_BREACH,
            )
            if staff_only:
                assert push.user_room(requester) not in rooms
                assert push.ticket_room(ticket_id) not in rooms
                assert push.ticket_staff_room(ticket_id) in rooms
                # Personal rooms are not role-checked: staff-only events use role rooms.
                assert push.user_room(agent) not in rooms
            else:
                assert push.user_room(requester) in rooms
                assert push.user_room(agent) in rooms
            assert push.AGENTS in rooms


def test_attachment_verdict_rooms() -> None:
    """Blocked: staff of the ticket, the uploader, agents (never the ticket room nor the
    requester's room). Ready: the ticket room; an internal file's only the staff room."""
    ticket_id, requester, uploader = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for internal in (False, True):
        blocked = push.rooms_for(
            PushEvent.ATTACHMENT_BLOCKED,
            ticket_id=ticket_id,
            requester_id=requester,
            uploader_id=uploader,
            internal=internal,
        )
        assert blocked == [
            push.ticket_staff_room(ticket_id),
            push.user_room(uploader),
            push.AGENTS,
        ]
        ready = push.rooms_for(
            PushEvent.ATTACHMENT_READY,
            ticket_id=ticket_id,
            requester_id=requester,
            uploader_id=uploader,
            internal=internal,
        )
        expected = push.ticket_staff_room(ticket_id) if internal else push.ticket_room(ticket_id)
        assert ready == [expected]


async def test_publish_to_no_room_reaches_nobody(
    runtime: Runtime, api_server: RunningServer
) -> None:
    user = await make_user(runtime)
    listener = await connect(api_server.url, user.token, ["ticket.updated"])
    try:
        await push.publish("ticket.updated", {"x": 1}, [])
        await push.publish("ticket.updated", {"x": 2}, [push.user_room(user.id)])
        assert (await listener.wait_for("ticket.updated")) == {"x": 2}
        assert len(listener.events) == 1
    finally:
        await listener.close()


async def test_bench_measures_publish_to_receipt_latency(
    runtime: Runtime, api_server: RunningServer
) -> None:
    from bench.push import measure_push_latency

    agent = await make_user(runtime, Role.SUPPORT_AGENT)

    async def change(i: int) -> int:
        await push.publish("ticket.updated", {"seq": i}, [push.AGENTS])
        return i

    figures = await measure_push_latency(
        api_server.url, agent.token, change, event="ticket.updated", count=30, warmup=2
    )
    assert figures["push_events"] == 30
    assert 0 <= figures["push_p50_ms"] <= figures["push_p99_ms"] < 1000
