"""The garbage collector's settings for the help desk's long-running processes.

CPython's cyclic collector walks every tracked object of a generation when it collects it.
A process of this one's kind (FastAPI, SQLAlchemy, the Temporal SDK and its workflow
sandbox) holds hundreds of thousands of long-lived objects made at start-up: modules,
classes, mappers, routes, compiled statements. Each collection of the oldest generation
walks all of them, a pause of tens of milliseconds on one request, that shows up as the
rare slow request at p99 (bench/lists.py) however fast the median is.

`settle()` runs once the process has started (the API listening, the worker polling): it
collects what start-up left behind, then freezes every survivor into the permanent
generation (`gc.freeze()`), which no collection walks again. Objects made later are
collected as before. Reference counting still frees frozen objects that become unused; only
reference cycles among start-up objects stay in memory, and those live for the whole
process anyway.

`HELPDESK_GC_FREEZE=0` turns it off (a process that builds and drops whole apps, as the
tests do, would otherwise keep the cycles of every app frozen).
"""

from __future__ import annotations

import gc
import os


def enabled() -> bool:
    """Whether this process settles its heap after start-up (HELPDESK_GC_FREEZE, on)."""
    return os.environ.get("HELPDESK_GC_FREEZE", "1").strip().lower() not in {"0", "false", "no"}


def settle() -> int:
    """Collect, then freeze what is left out of every later collection's walk.

    Returns how many objects are now frozen (0 when turned off)."""
    if not enabled():
        return 0
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
