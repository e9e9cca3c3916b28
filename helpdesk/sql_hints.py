"""Planner hints that change no result, only how SQLite finds it.

SQLite's statistics (`ANALYZE`, without STAT4 in Python's build) give an index column's
average rows per value, not which values are rare. Tickets pile up CLOSED, so a filter on
the live statuses is far more selective than those averages say, and SQLite may walk
another index (priority: every ticket of it, oldest first) instead of the status one.
`likely_rare(condition)` says so: SQLite's `likelihood(condition, 0.05)`; elsewhere the
condition as it is (PostgreSQL's statistics keep the most common values).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType


class likely_rare(FunctionElement[Any]):
    """A condition true for a small share of rows (a planner hint on SQLite)."""

    type = NullType()  # not Boolean: SQLite would get `likelihood(...) = 1`
    name = "likely_rare"
    inherit_cache = True


@compiles(likely_rare)
def _plain(element: likely_rare, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(likely_rare, "sqlite")
def _sqlite(element: likely_rare, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, 0.05)"
