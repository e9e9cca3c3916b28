"""Live pushes to Socket.IO clients, from any process: API replicas and workers alike.

Rooms (who is in them is decided by `api.socketio` when a socket connects or joins):

| room | members |
| --- | --- |
| ``user:<user id>`` | every socket of that user (joined on connect) |
| ``session:<session id>`` | the sockets of one login session (to disconnect them on revocation) |
| ``agents`` | staff: SUPPORT_AGENT, MANAGER, ADMINISTRATOR (joined on connect) |
| ``managers`` | MANAGER and ADMINISTRATOR (joined on connect) |
| ``ticket:<ticket id>`` | sockets that sent ``join_ticket`` and may view that ticket |
| ``ticket:<ticket id>:staff`` | staff sockets that joined the ticket (internal-note events) |

Events and their payload (`TicketEventPayload`, JSON; fields that do not apply are left
out; every payload has ``event_id``, ``ticket_id``, ``number``, ``at``), and their rooms
(`rooms_for`; "ticket" is ``ticket:<id>``, "staff" is ``ticket:<id>:staff``):

- ``ticket.created``: status, priority → ticket, requester, agents
- ``ticket.updated``: priority (what changed: fetch the ticket) → ticket, requester,
  assignee, agents
- ``ticket.status_changed``: status, previous_status → ticket, requester, assignee, agents
- ``ticket.assigned``: assignee_id → ticket, requester, assignee, agents
- ``ticket.escalated``: escalation_level, escalated_to → staff, assignee, escalated_to,
  agents, managers
- ``comment.added``: comment_id, internal → public: ticket, requester, assignee, agents;
  internal: staff, assignee, agents (never a room an end user is in)
- ``sla.warning`` / ``sla.breach``: sla_clock (first_response | resolution) → staff,
  assignee, agents, managers
- ``attachment.blocked``: attachment_id (the virus scanner found it infected; its bytes are
  destroyed) → staff, the uploader, agents
- ``attachment.ready``: attachment_id (scanned clean; clients refresh the list) → ticket,
  or staff only for an internal attachment

Payloads carry ids, numbers and states only, never text a person wrote or personal data:
a client that wants the comment fetches it over REST, where the access checks run again.
``event_id`` is stable across retries of the activity that pushes it, so a client drops a
duplicate by id.

Transport: with ``settings.redis_url`` every publisher (the API's server, or a write-only
manager in a worker process) goes through Redis pub/sub on ``push_redis_channel``, so a push
from any process reaches the clients of every API replica. Without Redis the API process
publishes in-process (the embedded default: the worker runs inside the API process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal, Protocol

import socketio
from pydantic import BaseModel, ConfigDict

from helpdesk import metrics
from helpdesk.rules.notify import PushEvent
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings, get_settings
from models.enums import Priority, TicketStatus

log = logging.getLogger("helpdesk.push")

NAMESPACE = "/"
AGENTS = "agents"
MANAGERS = "managers"


def user_room(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def session_room(session_id: uuid.UUID | str) -> str:
    return f"session:{session_id}"


def ticket_room(ticket_id: uuid.UUID | str) -> str:
    return f"ticket:{ticket_id}"


def ticket_staff_room(ticket_id: uuid.UUID | str) -> str:
    return f"ticket:{ticket_id}:staff"


class TicketEventPayload(BaseModel):
    """The body of every ticket event. No free text, no personal data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    ticket_id: uuid.UUID
    number: int | None = None
    status: TicketStatus | None = None
    previous_status: TicketStatus | None = None
    priority: Priority | None = None
    assignee_id: uuid.UUID | None = None
    escalation_level: int | None = None
    escalated_to: uuid.UUID | None = None
    comment_id: uuid.UUID | None = None
    internal: bool | None = None
    sla_clock: Literal["first_response", "resolution"] | None = None
    attachment_id: uuid.UUID | None = None
    at: datetime | None = None

    def to_message(self) -> dict[str, Any]:
        """The JSON the client receives."""
        return self.model_dump(mode="json", exclude_none=True)


_STAFF_ONLY = frozenset({PushEvent.TICKET_ESCALATED, PushEvent.SLA_WARNING, PushEvent.SLA_BREACH})
# Scan verdicts: their rooms follow the attachment (uploader, internal flag), not the ticket.
ATTACHMENT_EVENTS = frozenset({PushEvent.ATTACHMENT_BLOCKED, PushEvent.ATTACHMENT_READY})


def rooms_for(
    event: PushEvent,
    *,
    ticket_id: uuid.UUID,
    requester_id: uuid.UUID | None,
    assignee_id: uuid.UUID | None = None,
    escalated_to: uuid.UUID | None = None,
    internal: bool = False,
    uploader_id: uuid.UUID | None = None,
) -> list[str]:
    """Who hears an event. Internal notes, escalations and SLA alarms reach staff rooms only:
    never the requester's rooms, never the ticket room an end user may have joined.
    Attachment verdicts: see `attachment_rooms`."""
    if event in ATTACHMENT_EVENTS:
        return attachment_rooms(
            event, ticket_id=ticket_id, uploader_id=uploader_id, internal=internal
        )
    staff_only = internal or event in _STAFF_ONLY
    rooms = [ticket_staff_room(ticket_id)] if staff_only else [ticket_room(ticket_id)]
    if not staff_only and requester_id is not None:
        rooms.append(user_room(requester_id))
    if not staff_only:
        # A personal room is checked against nobody's current role: staff-only events go
        # through the role rooms (agents, managers), which a demoted user has left.
        for staff_member in (assignee_id, escalated_to):
            if staff_member is not None:
                rooms.append(user_room(staff_member))
    rooms.append(AGENTS)
    if event in _STAFF_ONLY:
        rooms.append(MANAGERS)
    return list(dict.fromkeys(rooms))


def attachment_rooms(
    event: PushEvent,
    *,
    ticket_id: uuid.UUID,
    uploader_id: uuid.UUID | None,
    internal: bool = False,
) -> list[str]:
    """A blocked (infected) attachment: the ticket's staff room, the uploader (told about
    their own upload) and the agents. A released one: the ticket room, where clients that
    show the ticket refresh; an internal attachment's release only the staff room, so an
    end user never learns it exists."""
    if event is PushEvent.ATTACHMENT_BLOCKED:
        rooms = [ticket_staff_room(ticket_id)]
        if uploader_id is not None:
            rooms.append(user_room(uploader_id))
        rooms.append(AGENTS)
        return rooms
    return [ticket_staff_room(ticket_id) if internal else ticket_room(ticket_id)]


class SessionAwareRedisManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager plus one thing it lacks: disconnecting every socket
    of a room on every replica (a revoked login session's sockets).

    The request travels as the manager's own ``close_room`` message with a ``disconnect``
    flag, so replicas that run the stock manager still close the room, and ours also drop
    the sockets. A write-only instance (in a worker) can send it too.
    """

    async def disconnect_room(self, room: str, namespace: str = NAMESPACE) -> None:
        message = {
            "method": "close_room",
            "room": room,
            "namespace": namespace,
            "host_id": self.host_id,
            "disconnect": True,
        }
        if self.server is not None:
            await self._disconnect_local(room, namespace)
        await self._publish(message)

    async def _handle_close_room(self, message: dict[str, Any]) -> None:
        if message.get("disconnect"):
            await self._disconnect_local(message["room"], message.get("namespace") or NAMESPACE)
        await super()._handle_close_room(message)

    async def _disconnect_local(self, room: str, namespace: str) -> None:
        if self.server is None:
            return
        for sid in [sid for sid, _eio in self.get_participants(namespace, room)]:
            await self.server.disconnect(sid, namespace=namespace, ignore_queue=True)

    async def aclose(self) -> None:
        """Stop listening and close the Redis connections (shutdown, tests)."""
        thread = getattr(self, "thread", None)
        if isinstance(thread, asyncio.Task):
            thread.cancel()
            await asyncio.gather(thread, return_exceptions=True)
        connection: Any = getattr(self, "redis", None)
        if connection is not None:
            await connection.aclose()
            self.redis = None
            self.connected = False


def redis_manager(settings: Settings, *, write_only: bool) -> SessionAwareRedisManager:
    """The Redis client manager every process of one deployment shares (same channel)."""
    if not settings.redis_url:
        raise ValueError("redis_url is not set")
    return SessionAwareRedisManager(
        settings.redis_url,
        channel=settings.push_redis_channel,
        write_only=write_only,
        logger=logging.getLogger("helpdesk.push.redis"),
    )


class Publisher(Protocol):
    async def publish(self, event: str, payload: dict[str, Any], rooms: list[str]) -> None: ...

    async def disconnect_session(self, session_id: uuid.UUID) -> None: ...

    async def aclose(self) -> None: ...


@contextlib.contextmanager
def _counted() -> Iterator[None]:
    try:
        yield
    except BaseException:
        metrics.PUSHES.labels(outcome="failed").inc()
        raise
    metrics.PUSHES.labels(outcome="sent").inc()


class ServerPublisher:
    """Publishes through an API process's Socket.IO server (its manager fans out)."""

    def __init__(self, server: socketio.AsyncServer) -> None:
        self.server = server

    async def publish(self, event: str, payload: dict[str, Any], rooms: list[str]) -> None:
        if rooms:  # never an empty target: python-socketio would broadcast to everyone
            with _counted():
                await self.server.emit(event, payload, to=list(rooms), namespace=NAMESPACE)

    async def disconnect_session(self, session_id: uuid.UUID) -> None:
        manager = self.server.manager
        room = session_room(session_id)
        if isinstance(manager, SessionAwareRedisManager):
            await manager.disconnect_room(room)
            return
        for sid in [sid for sid, _eio in manager.get_participants(NAMESPACE, room)]:
            await self.server.disconnect(sid, namespace=NAMESPACE)

    async def aclose(self) -> None:
        manager = self.server.manager
        if isinstance(manager, SessionAwareRedisManager):
            await manager.aclose()


class RedisPublisher:
    """Publishes from a process without a Socket.IO server (a worker) through Redis."""

    def __init__(self, manager: SessionAwareRedisManager) -> None:
        self.manager = manager

    async def publish(self, event: str, payload: dict[str, Any], rooms: list[str]) -> None:
        if rooms:
            with _counted():
                await self.manager.emit(event, payload, namespace=NAMESPACE, room=list(rooms))

    async def disconnect_session(self, session_id: uuid.UUID) -> None:
        await self.manager.disconnect_room(session_room(session_id))

    async def aclose(self) -> None:
        await self.manager.aclose()


class NullPublisher:
    """No transport: a worker in its own process without Redis has nobody to tell."""

    async def publish(self, event: str, payload: dict[str, Any], rooms: list[str]) -> None:
        metrics.PUSHES.labels(outcome="dropped").inc()
        log.debug("push %s dropped: no Socket.IO server or Redis in this process", event)

    async def disconnect_session(self, session_id: uuid.UUID) -> None:
        return None

    async def aclose(self) -> None:
        return None


def build_publisher(settings: Settings) -> Publisher:
    """The publisher of a process that hosts no Socket.IO server."""
    if settings.redis_url:
        return RedisPublisher(redis_manager(settings, write_only=True))
    return NullPublisher()


_process_publisher: Publisher | None = None


def install(publisher: Publisher) -> None:
    """Make `publisher` the one `publish` uses in this process (the API does at start-up)."""
    global _process_publisher
    _process_publisher = publisher


def uninstall(publisher: Publisher) -> None:
    global _process_publisher
    if _process_publisher is publisher:
        _process_publisher = None


def publisher_for(runtime: Runtime) -> Publisher:
    """The runtime's publisher: the API's server when this process hosts one, else one built
    from the settings (Redis write-only, or nothing), kept on the runtime."""
    if runtime.push is None:
        runtime.push = _process_publisher or build_publisher(runtime.settings)
    return runtime.push


async def publish(event: str, payload: dict[str, Any], rooms: list[str]) -> None:
    """Send `event` with `payload` to every socket in any of `rooms`, on every replica."""
    global _process_publisher
    if _process_publisher is None:
        _process_publisher = build_publisher(get_settings())
    await _process_publisher.publish(event, payload, rooms)


def install_revocation_hook(runtime: Runtime, publisher: Publisher) -> None:
    """Disconnect a session's sockets when `helpdesk.services.sessions` revokes it.

    The sessions service calls the hook synchronously inside its transaction; the
    disconnect runs as a task right after. A client that reconnects before that
    transaction commits is caught by the API's periodic session check.
    """
    previous = runtime.on_session_revoked
    pending = runtime.push_pending_tasks

    def on_session_revoked(session_id: uuid.UUID) -> None:
        # Chain a hook someone else installed; replace an earlier push hook of ours.
        if previous is not None and not getattr(previous, "push_hook", False):
            previous(session_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(_disconnect_quietly(publisher, session_id))
        pending.add(task)
        task.add_done_callback(pending.discard)

    on_session_revoked.push_hook = True  # type: ignore[attr-defined]
    on_session_revoked.previous = previous  # type: ignore[attr-defined]
    runtime.on_session_revoked = on_session_revoked


def uninstall_revocation_hook(runtime: Runtime) -> None:
    """Put back whatever hook was there before ours (the API process is shutting down)."""
    hook = runtime.on_session_revoked
    if getattr(hook, "push_hook", False):
        previous = getattr(hook, "previous", None)
        if previous is None or getattr(previous, "push_hook", False):
            runtime.on_session_revoked = None
        else:
            runtime.on_session_revoked = previous


async def _disconnect_quietly(publisher: Publisher, session_id: uuid.UUID) -> None:
    try:
        await publisher.disconnect_session(session_id)
    except Exception:  # a failed disconnect is retried by the periodic session check
        log.exception("disconnecting the sockets of a revoked session failed")
