"""One deadline for a whole ticket command (issue 11: with Temporal down, creation
answered 503 after 35 to 46 s although the command timeout was 30 s, because every retry
of every call had a full timeout of its own).

`command_deadline` opens the deadline once, at the outermost call; nested calls (the
retries of `with_retries`, a second call after NOT_FOUND, the connect) share it, so the
whole request ends within `HELPDESK_TICKET_COMMAND_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from helpdesk import errors

_DEADLINE: ContextVar[float | None] = ContextVar("helpdesk_command_deadline", default=None)


@asynccontextmanager
async def command_deadline(seconds: float) -> AsyncIterator[None]:
    """Run the block within `seconds` (or within an enclosing deadline, if one is open):
    past it, `errors.Unavailable` (503 + Retry-After)."""
    if _DEADLINE.get() is not None:
        yield
        return
    when = asyncio.get_running_loop().time() + seconds
    token = _DEADLINE.set(when)
    try:
        async with asyncio.timeout_at(when):
            yield
    except TimeoutError:
        raise errors.Unavailable(
            "the ticket's workflow did not answer in time", retry_after=5
        ) from None
    finally:
        _DEADLINE.reset(token)
