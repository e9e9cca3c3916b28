"""Load shedding before any work: past the in-flight limit of ticket creations (or
commands) the answer is 503 + Retry-After straight away.

The limit used to be a route dependency, so a refused request had its body read and
parsed first, and waited its turn on the event loop behind the work it was refused for
(issue 11: 738 ms at p50 in the ticket benchmark). As ASGI middleware the admission is
decided from the method and path alone: no body, no authentication, no database. An
admitted request keeps its slot until its response is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_body
from helpdesk import errors
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_commands

Slot = Callable[[Runtime], AbstractAsyncContextManager[None]]


def _admissions(prefix: str) -> list[tuple[str, re.Pattern[str], Slot]]:
    one = rf"{re.escape(prefix)}/tickets/[^/]+"
    return [
        ("POST", re.compile(rf"^{re.escape(prefix)}/tickets/?$"), ticket_commands.creation_slot),
        ("PUT", re.compile(rf"^{one}/?$"), ticket_commands.command_slot),
        ("POST", re.compile(rf"^{one}/(?:status|assign)/?$"), ticket_commands.command_slot),
    ]


class LoadShedMiddleware:
    """Admit ticket creations and commands into their in-flight slots, or refuse at once."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.admissions = _admissions(prefix)

    def _slot_for(self, scope: Scope) -> Slot | None:
        method, path = scope.get("method", ""), scope.get("path", "")
        for wanted, pattern, slot in self.admissions:
            if method == wanted and pattern.match(path):
                return slot
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = self._slot_for(scope) if scope["type"] == "http" else None
        if slot is None:
            await self.app(scope, receive, send)
            return
        runtime: Runtime = scope["app"].state.runtime
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(slot(runtime))
            except errors.Unavailable as refused:
                response = JSONResponse(
                    error_body(refused.code, refused.message),
                    status_code=503,
                    headers={"Retry-After": str(refused.retry_after)},
                )
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)
