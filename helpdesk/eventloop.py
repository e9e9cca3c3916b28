"""The event loop the help desk's processes run on.

`helpdesk dev`, `helpdesk api` and `helpdesk worker` run everything (HTTP, Socket.IO, the
Temporal worker and client, SQLite's hand-overs) on one event loop per process, and in the
embedded default that loop's Python time is what bounds ticket creation (bench/tickets.py).
uvloop (libuv, shipped with ``uvicorn[standard]``) schedules callbacks and polls sockets in
C: profiled here it took ~5-10 % of a busy process's CPU off the loop's own bookkeeping.
`HELPDESK_EVENT_LOOP=asyncio` goes back to the standard loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop unless HELPDESK_EVENT_LOOP=asyncio or uvloop is not installed."""
    if os.environ.get("HELPDESK_EVENT_LOOP", "uvloop").lower() == "asyncio":
        return None
    try:  # lazy: optional (absent off Linux), and not loaded with HELPDESK_EVENT_LOOP=asyncio
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it on Linux
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the help desk's event loop (see the module docstring)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
