"""Who is calling and from where, for the audit log, carried in a context variable."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str = "-"
    ip: str | None = None
    user_agent: str | None = None
    actor_id: uuid.UUID | None = None
    actor_role: str | None = None
    session_id: uuid.UUID | None = None


_current: ContextVar[RequestContext] = ContextVar("helpdesk_request_context")


def current_context() -> RequestContext:
    return _current.get(RequestContext())


def set_context(ctx: RequestContext) -> None:
    _current.set(ctx)


def bind_actor(actor_id: uuid.UUID, role: str, session_id: uuid.UUID | None) -> None:
    """Record the authenticated caller on the current request's context."""
    _current.set(
        replace(current_context(), actor_id=actor_id, actor_role=role, session_id=session_id)
    )
