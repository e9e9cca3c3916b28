"""A change's Socket.IO push leaves with the change itself: the persist activity publishes it
right after its commit, before the update (and so the REST call) answers, instead of the
workflow's main loop running a separate push activity afterwards (bench/push.py measures
the latency this removes). If that publish fails, the main loop still sends it. A new
ticket's notifications, emails included, leave with its creation the same way."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from api.app import create_asgi_app
from helpdesk import push
from helpdesk.email import EmailTransientError
from helpdesk.runtime import Runtime
from helpdesk.temporal import codec, ticket_workflow_id
from models.enums import Role
from tests.support.comm import connect, serve
from tests.support.comments import comment_worker
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status

pytestmark = pytest.mark.temporal


async def _pushes_run_by_activities(client: Client, runtime: Runtime, ticket_id: str) -> list[str]:
    """The push events the ticket's notification activities were asked to publish (their
    inputs decoded with our codec), in history order."""
    history = await client.get_workflow_handle(ticket_workflow_id(ticket_id)).fetch_history()
    events: list[str] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                # A local activity records its type, not its input: name it as such.
                data = json.loads(marker.details["data"].payloads[0].data)
                if data["activity_type"] in ("publish_event", "notify_change"):
                    events.append(f"local:{data['activity_type']}")
            continue
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attrs = event.activity_task_scheduled_event_attributes
        name = attrs.activity_type.name
        if name not in ("publish_event", "notify_change"):
            continue
        (payload,) = await codec(runtime.settings).decode(list(attrs.input.payloads))
        data = json.loads(payload.data)
        pushes = data["pushes"] if name == "notify_change" else [data]
        events += [p["event"] for p in pushes]
    return events


class _FailingOnce:
    """A publisher that refuses its first status push (a Redis outage, say), then delivers
    through the real one."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.refused = 0

    async def publish(self, event: str, data: dict[str, Any], rooms: list[str]) -> None:
        if event == push.PushEvent.TICKET_STATUS_CHANGED.value and not self.refused:
            self.refused += 1
            raise ConnectionError("fan-out unavailable")
        await self.real.publish(event, data, rooms)


async def test_a_status_push_is_published_by_the_change_and_arrives_once(
    runtime: Runtime, temporal_client: Client
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    runtime.temporal = temporal_client
    asgi = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    async with (
        serve(asgi, asgi.other_asgi_app) as server,
        comment_worker(temporal_client, runtime),
        httpx.AsyncClient(base_url=server.url, timeout=60) as http,
    ):
        tid = (await create_ticket(http, requester))["id"]
        socket = await connect(server.url, requester.token, ["ticket.status_changed"])
        try:
            joined = await socket.client.call("join_ticket", {"ticket_id": tid}, timeout=5)
            assert joined["ok"] is True
            moved = await set_status(http, agent, tid, "IN_PROGRESS")
            assert moved.status_code == 200, moved.text
            got = await socket.wait_for("ticket.status_changed", timeout=20)
            assert got["status"] == "IN_PROGRESS" and got["previous_status"] == "OPEN"
            assert got["number"] == moved.json()["number"]
            # No push activity: the creation's notifications went out from the create
            # activity, the status change's as a local activity (its push from the persist
            # activity).
            assert await _pushes_run_by_activities(temporal_client, runtime, tid) == [
                "local:notify_change",
            ]
            assert [p["status"] for _, p in socket.events] == ["IN_PROGRESS"]
        finally:
            await socket.close()


async def test_when_the_changes_publish_fails_the_workflow_sends_the_push_itself(
    runtime: Runtime, temporal_client: Client
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    runtime.temporal = temporal_client
    asgi = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    async with (
        serve(asgi, asgi.other_asgi_app) as server,
        comment_worker(temporal_client, runtime),
        httpx.AsyncClient(base_url=server.url, timeout=60) as http,
    ):
        failing = _FailingOnce(push.publisher_for(runtime))
        runtime.push = failing  # type: ignore[assignment]
        tid = (await create_ticket(http, requester))["id"]
        socket = await connect(server.url, requester.token, ["ticket.status_changed"])
        try:
            await socket.client.call("join_ticket", {"ticket_id": tid}, timeout=5)
            assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200
            got = await socket.wait_for("ticket.status_changed", timeout=20)
            assert got["status"] == "IN_PROGRESS"
            assert failing.refused == 1
            # The creation's notifications went out from the create activity; the status
            # change's push, refused once, from the main loop's local activity.
            assert await _pushes_run_by_activities(temporal_client, runtime, tid) == [
                "local:notify_change",
            ]
        finally:
            await socket.close()


class _RefusingOnce:
    """An email backend that is unavailable for its first message, then delivers."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.refused = 0

    async def send(self, message: Any) -> None:
        if not self.refused:
            self.refused += 1
            raise EmailTransientError("try again later")
        await self.real.send(message)

    def messages(self) -> list[dict[str, str]]:
        return list(self.real.messages())


async def test_a_new_tickets_notifications_leave_with_its_creation_and_fall_back_to_the_workflow(
    runtime: Runtime, temporal_client: Client
) -> None:
    """A new ticket's email and push go out from its create activity, right after the
    commit (no activity, local or not, of their own). When the mail provider is down for a
    moment, the create activity says so and the workflow sends them itself (a local
    attempt, then the regular activity with its retries): the requester gets the email
    once."""
    requester = await make_user(runtime)
    runtime.temporal = temporal_client
    asgi = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    async with (
        serve(asgi, asgi.other_asgi_app) as server,
        comment_worker(temporal_client, runtime),
        httpx.AsyncClient(base_url=server.url, timeout=60) as http,
    ):
        quiet = await create_ticket(http, requester)
        assert await _pushes_run_by_activities(temporal_client, runtime, quiet["id"]) == []
        flaky = _RefusingOnce(runtime.email)
        runtime.email = flaky
        tid = (await create_ticket(http, requester))["id"]
        for _ in range(100):
            if len(flaky.messages()) == 2:
                break
            await asyncio.sleep(0.1)
        assert flaky.refused == 1
        number = (await http.get(f"/api/v1/tickets/{tid}", headers=requester.headers)).json()
        assert [m["to"] for m in flaky.messages()] == [requester.email, requester.email]
        assert f"#{number['number']}" in flaky.messages()[-1]["subject"]
        assert await _pushes_run_by_activities(temporal_client, runtime, tid) == [
            "local:notify_change",
        ]
