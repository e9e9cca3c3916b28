"""Every activity the worker registers, built around the process's Runtime (append yours)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from helpdesk.runtime import Runtime


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    """The bound activity methods of every activity class, sharing `runtime`."""
    activities: list[Callable[..., Any]] = []
    return activities
