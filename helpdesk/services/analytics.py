"""Analytics reads for the API: figures from the rollups, the backlog and agents from the
fact rows, the de-identified export; every call audited (what was asked, never a figure)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Literal

from helpdesk import errors, ratelimit
from helpdesk.analytics import export, queries
from helpdesk.analytics.queries import Dimension, Interval, Scope
from helpdesk.context import current_context, set_context
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_tags
from models.base import utcnow

TABLE = "analytics"
AgentSort = Literal[
    "agent_id",
    "created",
    "resolved",
    "open_tickets",
    "weighted_load",
    "first_response_median",
    "resolution_median",
    "reopen_rate",
]


def scope(
    runtime: Runtime,
    start: datetime,
    end: datetime,
    filters: Sequence[tuple[str, str]] = (),
    tag: str | None = None,
) -> Scope:
    """A period within filters (on distinct dimensions: all must hold) and at most one tag.
    A tag must be on the administrators' approved list (`HELPDESK_ANALYTICS_EXPORT_TAGS`,
    as the export's rule: tags are free text), matched by its blind token; any other is
    refused (422) without saying whether a ticket carries it."""
    if tag is None:
        return Scope(start, end, filters=tuple(filters))
    approved = {ticket_tags.normalise_tag(t) for t in runtime.settings.analytics_export_tags}
    wanted = ticket_tags.normalise_tag(tag)
    if wanted not in approved:
        raise errors.ValidationFailed(
            "only a tag on the approved list may filter analytics", details={"field": "tag"}
        )
    token = ticket_tags.tag_token(runtime.blind_index, wanted)
    return Scope(start, end, filters=tuple(filters), tag=token, label=wanted)


def _scope_details(scope: Scope) -> dict[str, Any]:
    details: dict[str, Any] = {"from": scope.start.isoformat(), "to": scope.end.isoformat()}
    found = dict(scope.filters) | ({"tag": scope.label} if scope.tag else {})
    if found:
        details["filter"] = found
    return details


async def _audit(runtime: Runtime, action: str, details: dict[str, Any], **kw: Any) -> None:
    async with runtime.database.transaction() as session:
        await runtime.audit.record(session, action, table=TABLE, details=details, **kw)


async def overview(runtime: Runtime, scope: Scope) -> dict[str, Any]:
    k = runtime.settings.analytics_min_cell_size
    async with runtime.database.read() as session:
        figures = await queries.period(session, scope, k)
        backlog = await queries.backlog(session, scope, utcnow(), k)
    await _audit(runtime, "analytics.overview.read", _scope_details(scope))
    read = queries.counted(scope)
    return {"from": read.start, "to": read.end, "measures": figures, "backlog": backlog}


async def series(
    runtime: Runtime, scope: Scope, interval: Interval, group_by: Dimension | None
) -> dict[str, Any]:
    k = runtime.settings.analytics_min_cell_size
    async with runtime.database.read() as session:
        points = await queries.series(session, scope, interval, group_by, k)
    details = _scope_details(scope) | {"interval": interval, "group_by": group_by}
    await _audit(runtime, "analytics.tickets.read", details)
    read = queries.counted(scope, group_by, hourly=interval == "hour")
    return {
        "from": read.start,
        "to": read.end,
        "interval": interval,
        "group_by": group_by,
        "points": points,
    }


def _sort_key(sort: AgentSort) -> Any:
    paths = {
        "first_response_median": ("first_response", "median_seconds"),
        "resolution_median": ("resolution", "median_seconds"),
    }

    def key(row: dict[str, Any]) -> tuple[bool, Any]:
        value: Any = row
        for part in paths.get(sort, (sort,)):
            value = value.get(part) if isinstance(value, dict) else None
        return (value is None, value if value is not None else 0)

    return key


async def agents(
    runtime: Runtime,
    scope: Scope,
    *,
    only: uuid.UUID | None,
    sort: AgentSort,
    descending: bool,
    page: int,
    page_size: int,
) -> dict[str, Any]:
    k = runtime.settings.analytics_min_cell_size
    async with runtime.database.read() as session:
        rows = await queries.agents(session, scope, k, only)
    key = _sort_key(sort)
    present = [r for r in rows if not key(r)[0]]
    missing = [r for r in rows if key(r)[0]]  # suppressed or none: last either way
    ordered = sorted(present, key=lambda r: (key(r)[1], r["agent_id"]), reverse=descending)
    ordered += sorted(missing, key=lambda r: str(r["agent_id"]))
    start = (page - 1) * page_size
    details = _scope_details(scope) | {"own_row_only": only is not None, "page": page}
    await _audit(runtime, "analytics.agents.read", details)
    within = scope if only is None else scope.narrowed("assignee", str(only))
    read = queries.counted(within, "assignee")
    return {
        "from": read.start,
        "to": read.end,
        "items": ordered[start : start + page_size],
        "total": len(ordered),
        "page": page,
        "page_size": page_size,
    }


async def start_export(
    runtime: Runtime,
    user_id: uuid.UUID,
    scope: Scope,
    fmt: export.ExportFormat,
    *,
    stable_pseudonyms: bool,
    rows: export.ExportRows = "ticket",
) -> AsyncIterator[bytes]:
    """Check the rate, audit the export's start, and hand back its byte stream (which audits
    its end: rows, SHA-256 of the bytes sent)."""
    verdict = await ratelimit.limiter(
        runtime, "analytics-export", limit=runtime.settings.analytics_exports_per_hour, window=3600
    ).hit(str(user_id))
    if not verdict.allowed:
        raise errors.RateLimited(
            "too many exports; try again later", retry_after=verdict.retry_after
        )
    details = _scope_details(scope) | {
        "format": fmt,
        "rows_per": rows,
        "stable_pseudonyms": stable_pseudonyms,
    }
    await _audit(runtime, "analytics.export.start", details)
    names = (
        export.Pseudonyms.stable(runtime) if stable_pseudonyms else export.Pseudonyms.per_export()
    )
    request = export.ExportRequest(scope=scope, format=fmt, pseudonyms=names, rows=rows)
    return _export_bytes(runtime, request, details)


async def _export_bytes(
    runtime: Runtime, request: export.ExportRequest, details: dict[str, Any]
) -> AsyncIterator[bytes]:
    context = current_context()
    digest = hashlib.sha256()
    rows = 0
    outcome: Literal["success", "failure"] = "failure"
    try:
        header = True
        async for batch in export.stream(runtime, request):
            chunk = export.encode(batch, request.format, header, request.rows)
            header = False
            digest.update(chunk)
            rows += len(batch)
            yield chunk
        if header and request.format == "csv":
            chunk = export.encode([], "csv", True, request.rows)
            digest.update(chunk)
            yield chunk
        outcome = "success"
    finally:
        set_context(context)
        await _audit(
            runtime,
            "analytics.export",
            details | {"rows": rows, "sha256": digest.hexdigest()},
            outcome=outcome,
        )
