"""The Socket.IO server at /socket.io: authenticated sockets, rooms by role and by ticket.

- ``connect`` needs ``auth={"token": "<access token>"}``; the token is checked like a REST
  call's (`api.deps.authenticate_token`: signature, expiry, live server-side session, active
  user). The socket joins ``user:<id>``, ``session:<session id>``, and ``agents`` /
  ``managers`` by role.
- ``join_ticket`` ``{"ticket_id": "...", "staff": false}`` joins ``ticket:<id>`` if
  `helpdesk.policy.can_view_ticket` allows; staff also join ``ticket:<id>:staff`` (asking
  for it as an end user is refused). The ack is ``{"ok": true, "rooms": [...]}`` or
  ``{"ok": false, "error": "not_found" | "forbidden" | "invalid" | "unauthenticated"}``; a
  ticket the caller may not see answers ``not_found`` (as REST's 404) and is audited.
- ``leave_ticket`` ``{"ticket_id": "..."}`` leaves both ticket rooms.
- A revoked session's sockets are dropped at once (`helpdesk.push.install_revocation_hook`,
  across replicas through Redis), and every ``push_session_check_seconds`` each API process
  re-checks the sessions of its sockets (idle timeout, expiry, deactivation, and a
  revocation that raced a reconnect).

Event names and payloads: see `helpdesk.push`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import socketio
from fastapi import FastAPI
from sqlalchemy import select

from api.deps import authenticate_token
from api.middleware import client_ip
from helpdesk import metrics, policy, push
from helpdesk.context import RequestContext, bind_actor, set_context
from helpdesk.errors import DomainError
from helpdesk.runtime import Runtime
from helpdesk.services.sessions import session_problem
from helpdesk.settings import Settings
from models.enums import PRIVILEGED_ROLES, STAFF_ROLES, Role
from models.ticket import Ticket
from models.user import AuthSession, User

log = logging.getLogger("helpdesk.socketio")

SOCKETIO_PATH = "socket.io"


@dataclass(frozen=True, slots=True)
class SocketCaller:
    """Who owns a socket, as `helpdesk.policy` expects a caller."""

    id: uuid.UUID
    role: Role
    session_id: uuid.UUID


class TicketSockets:
    """The Socket.IO server of one API process and its event handlers."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.trusted_proxies = [
            ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies
        ]
        manager = push.redis_manager(settings, write_only=False) if settings.redis_url else None
        self.server = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=manager,
            # The configured origins; none configured means same-origin browsers only.
            cors_allowed_origins=list(settings.cors_origins) or None,
            logger=False,
            engineio_logger=False,
        )
        self.publisher = push.ServerPublisher(self.server)
        self._open: set[str] = set()  # sids of accepted connections (the gauge)
        self.server.on("connect", self.on_connect)
        self.server.on("disconnect", self.on_disconnect)
        self.server.on("join_ticket", self.on_join_ticket)
        self.server.on("leave_ticket", self.on_leave_ticket)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    # --- handlers -------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        token = auth.get("token") if isinstance(auth, dict) else None
        ip = client_ip(
            environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), self.trusted_proxies
        )
        user_agent = str(environ.get("HTTP_USER_AGENT") or "")[:255]
        set_context(RequestContext(request_id=f"socket-{sid[:16]}", ip=ip, user_agent=user_agent))
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("authentication required")
        try:
            principal = await authenticate_token(self.runtime, token)
        except DomainError:
            raise socketio.exceptions.ConnectionRefusedError("authentication failed") from None
        role = principal.role
        await self.server.save_session(
            sid,
            {
                "user_id": str(principal.id),
                "role": role.value,
                "session_id": str(principal.session.id),
                "ip": ip,
                "user_agent": user_agent,
            },
        )
        rooms = [push.user_room(principal.id), push.session_room(principal.session.id)]
        if role in STAFF_ROLES:
            rooms.append(push.AGENTS)
        if role in PRIVILEGED_ROLES:
            rooms.append(push.MANAGERS)
        for room in rooms:
            await self.server.enter_room(sid, room)
        self._open.add(sid)
        metrics.SOCKETS.inc()
        return True

    async def on_disconnect(self, sid: str, *_reason: Any) -> None:
        if sid in self._open:  # only accepted connections were counted
            self._open.discard(sid)
            metrics.SOCKETS.dec()

    async def _caller(self, sid: str) -> SocketCaller | None:
        """The socket's owner if their session is still good (bound for the audit)."""
        data = await self.server.get_session(sid)
        caller = SocketCaller(
            id=uuid.UUID(data["user_id"]),
            role=Role(data["role"]),
            session_id=uuid.UUID(data["session_id"]),
        )
        set_context(
            RequestContext(
                request_id=f"socket-{sid[:16]}",
                ip=data.get("ip"),
                user_agent=data.get("user_agent"),
            )
        )
        bind_actor(caller.id, caller.role.value, caller.session_id)
        async with self.runtime.database.transaction() as session:
            auth_session = await session.get(AuthSession, caller.session_id)
            user = await session.get(User, caller.id)
            if (
                auth_session is None
                or user is None
                or not user.is_active
                or session_problem(auth_session, self.runtime, datetime.now(UTC)) is not None
            ):
                return None
        return caller

    async def on_join_ticket(self, sid: str, data: Any) -> dict[str, Any]:
        caller = await self._caller(sid)
        if caller is None:
            await self.server.disconnect(sid)
            return {"ok": False, "error": "unauthenticated"}
        try:
            ticket_id = uuid.UUID(str(data["ticket_id"]))
            wants_staff = bool(data.get("staff", False))
        except (KeyError, TypeError, ValueError, AttributeError):
            return {"ok": False, "error": "invalid"}
        async with self.runtime.database.transaction() as session:
            ticket = await session.get(Ticket, ticket_id)
            visible = (
                ticket is not None
                and ticket.deleted_at is None
                and policy.can_view_ticket(caller, ticket)
            )
            refusal = None
            if not visible:
                refusal = "not_found"
            elif wants_staff and not policy.can_see_internal(caller.role):
                refusal = "forbidden"
            if refusal is not None:
                await self.runtime.audit.record(
                    session,
                    "socket.join_ticket",
                    outcome="denied",
                    table="tickets",
                    record_id=ticket_id,
                    details={"room": "staff" if wants_staff else "ticket", "why": refusal},
                )
                return {"ok": False, "error": refusal}
        rooms = [push.ticket_room(ticket_id)]
        if policy.can_see_internal(caller.role):
            rooms.append(push.ticket_staff_room(ticket_id))
        for room in rooms:
            await self.server.enter_room(sid, room)
        return {"ok": True, "rooms": rooms}

    async def on_leave_ticket(self, sid: str, data: Any) -> dict[str, Any]:
        try:
            ticket_id = uuid.UUID(str(data["ticket_id"]))
        except (KeyError, TypeError, ValueError):
            return {"ok": False, "error": "invalid"}
        for room in (push.ticket_room(ticket_id), push.ticket_staff_room(ticket_id)):
            await self.server.leave_room(sid, room)
        return {"ok": True}

    # --- periodic session check -------------------------------------------------------

    async def check_sessions(self) -> int:
        """Disconnect this process's sockets whose session is revoked, idle, expired, or
        whose user is deactivated. Returns how many were dropped."""
        owners: dict[str, uuid.UUID] = {}
        for sid, _eio in list(self.server.manager.get_participants(push.NAMESPACE, None)):
            with contextlib.suppress(KeyError):
                data = await self.server.get_session(sid)
                if "session_id" in data:
                    owners[sid] = uuid.UUID(data["session_id"])
        if not owners:
            return 0
        now = datetime.now(UTC)
        async with self.runtime.database.transaction() as session:
            rows = await session.execute(
                select(AuthSession, User.is_active)
                .join(User, User.id == AuthSession.user_id)
                .where(AuthSession.id.in_(set(owners.values())))
            )
            good = {
                auth_session.id
                for auth_session, active in rows
                if active and session_problem(auth_session, self.runtime, now) is None
            }
        dropped = [sid for sid, session_id in owners.items() if session_id not in good]
        for sid in dropped:
            await self.server.disconnect(sid)
        return len(dropped)

    async def _check_sessions_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.push_session_check_seconds)
            try:
                await self.check_sessions()
            except Exception:  # keep checking; the next round retries
                log.exception("socket session check failed")

    # --- lifecycle ----------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start-up and shutdown around the API's own lifespan."""
        runtime = self.runtime
        runtime.push = self.publisher
        runtime.sockets = self
        push.install(self.publisher)
        push.install_revocation_hook(runtime, self.publisher)
        # Subscribe to Redis now rather than at the first connection, so that no push
        # published right after a client connects is missed.
        if not self.server.manager_initialized:
            self.server.manager_initialized = True
            self.server.manager.initialize()
        checker = asyncio.create_task(self._check_sessions_forever())
        try:
            yield
        finally:
            checker.cancel()
            await asyncio.gather(checker, return_exceptions=True)
            await self.server.shutdown()
            push.uninstall_revocation_hook(runtime)
            push.uninstall(self.publisher)
            if runtime.push is self.publisher:
                runtime.push = None
            await self.publisher.aclose()


def mount_socketio(app: FastAPI, settings: Settings) -> socketio.ASGIApp:
    """Wrap the FastAPI app: Socket.IO answers /socket.io, FastAPI everything else; the
    Socket.IO server starts and stops inside the FastAPI lifespan."""
    sockets = TicketSockets(app, settings)
    app.state.sockets = sockets
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        async with inner(asgi_app) as state, sockets.running():
            yield state

    app.router.lifespan_context = lifespan
    return socketio.ASGIApp(sockets.server, other_asgi_app=app, socketio_path=SOCKETIO_PATH)
