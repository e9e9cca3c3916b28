"""Every workflow class the worker registers (append yours)."""

from __future__ import annotations

WORKFLOWS: list[type] = []
