"""Routes: reporting and analytics (figures from the rollups; a de-identified export).

Managers and administrators with an MFA session read everything; a support agent reads only
their own row of /analytics/agents; end users get 403. Every call is audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import (
    ManagerOrAdmin,
    Principal,
    RuntimeDep,
    Staff,
    _denied,
    require_privileged,
)
from api.schemas.analytics import (
    AgentsPage,
    AgentsQuery,
    AnalyticsQuery,
    ExportQuery,
    Overview,
    Series,
    SeriesQuery,
)
from helpdesk.analytics.queries import Scope
from helpdesk.runtime import Runtime
from helpdesk.services import analytics
from models.enums import PRIVILEGED_ROLES, Role

router = APIRouter(prefix="/analytics")
_privileged = require_privileged(Role.MANAGER, Role.ADMINISTRATOR)


async def _agents_reader(request: Request, principal: Staff, runtime: RuntimeDep) -> Principal:
    """Staff; a manager or administrator also needs the privileged gate (MFA, allowlist)."""
    if principal.role in PRIVILEGED_ROLES:
        return await _privileged(request, principal, runtime)
    return principal


AgentsReader = Annotated[Principal, Depends(_agents_reader)]


def _scope(query: AnalyticsQuery | AgentsQuery, runtime: Runtime) -> Scope:
    if query.from_ is None or query.to is None:  # pragma: no cover - set by the validator
        raise ValueError("the period is unset")
    found = query.filters()
    tags = [value for dim, value in found if dim == "tag"]
    filters = [(dim, value) for dim, value in found if dim != "tag"]
    return analytics.scope(runtime, query.from_, query.to, filters, tags[0] if tags else None)


@router.get("/overview", response_model=Overview)
async def overview(
    query: Annotated[AnalyticsQuery, Query()], principal: ManagerOrAdmin, runtime: RuntimeDep
) -> Any:
    """Backlog now; created, resolved, reopened, reply and resolution times, SLA
    achievement, escalations, reopen and one-touch rates over the period."""
    return await analytics.overview(runtime, _scope(query, runtime))


@router.get("/tickets", response_model=Series)
async def ticket_series(
    query: Annotated[SeriesQuery, Query()], principal: ManagerOrAdmin, runtime: RuntimeDep
) -> Any:
    """The overview's measures per interval (and per group)."""
    return await analytics.series(runtime, _scope(query, runtime), query.interval, query.group_by)


@router.get("/agents", response_model=AgentsPage)
async def agent_performance(
    query: Annotated[AgentsQuery, Query()], principal: AgentsReader, runtime: RuntimeDep
) -> Any:
    """Per agent (a support agent: their own row only), sortable and paged."""
    only = principal.id if principal.role == Role.SUPPORT_AGENT else None
    return await analytics.agents(
        runtime,
        _scope(query, runtime),
        only=only,
        sort=query.sort,
        descending=query.order == "desc",
        page=query.page,
        page_size=query.page_size,
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
async def export_tickets(
    request: Request,
    query: Annotated[ExportQuery, Query()],
    principal: ManagerOrAdmin,
    runtime: RuntimeDep,
) -> StreamingResponse:
    """A de-identified dataset, one row per ticket created in the period or (`rows=event`)
    per event of those tickets (Safe Harbor: pseudonyms, dates to the day, no free text),
    streamed as CSV or JSON Lines."""
    if query.stable_pseudonyms and principal.role != Role.ADMINISTRATOR:
        raise _denied(principal, "stable_pseudonyms", request)
    body = await analytics.start_export(
        runtime,
        principal.id,
        _scope(query, runtime),
        query.format,
        stable_pseudonyms=query.stable_pseudonyms,
        rows=query.rows,
    )
    media = "text/csv; charset=utf-8" if query.format == "csv" else "application/x-ndjson"
    name = f"{'tickets' if query.rows == 'ticket' else 'ticket-events'}.{query.format}"
    return StreamingResponse(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
