"""Routes: ticket reads that come from the database (the list)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AnyUser, Principal, RuntimeDep
from api.schemas.ticket_list import TicketListItem, TicketListPage, TicketQuery
from helpdesk import policy
from helpdesk.services import ticket_list, ticket_list_request

router = APIRouter()


def _user(value: uuid.UUID | str | None, principal: Principal) -> uuid.UUID | None:
    if value == "me":
        return principal.id
    return value if isinstance(value, uuid.UUID) else None


@router.get("/tickets", response_model=TicketListPage)
async def list_tickets(
    query: Annotated[TicketQuery, Query()],
    principal: AnyUser,
    runtime: RuntimeDep,
) -> TicketListPage:
    """Tickets the caller may see (an end user: only their own), filtered, sorted and paged."""
    filters = ticket_list_request.TicketFilter(
        statuses=tuple(dict.fromkeys(query.status)),
        priorities=tuple(dict.fromkeys(query.priority)),
        category_id=query.category_id,
        assignee_id=_user(query.assignee_id, principal),
        unassigned=query.assignee_id == "unassigned",
        requester_id=_user(query.requester_id, principal),
        tags=tuple(dict.fromkeys(query.tag)),
        escalated=query.escalated,
        created_from=query.created_from,
        created_to=query.created_to,
        updated_from=query.updated_from,
        updated_to=query.updated_to,
        q=query.q,
        sla=query.sla,
    )
    page = ticket_list_request.PageRequest(
        sort=query.sort,
        direction=query.order,
        page=query.page,
        page_size=query.page_size,
        cursor=query.cursor,
    )
    # The list reads a snapshot: on SQLite it then neither waits for nor holds up the one
    # writer (creations, changes). Its audit row commits in a short write of its own
    # before the page is answered: no page leaves unaudited.
    async with runtime.database.read() as snapshot:
        result = await ticket_list.list_tickets(snapshot, runtime, principal, filters, page)
    async with runtime.database.transaction() as session:
        await ticket_list.audit_list_read(session, runtime, len(result.items), filters, page)
    see_target = policy.can_see_escalation_target(principal.role)
    return TicketListPage(
        items=[
            TicketListItem.model_validate(i, from_attributes=True).model_copy(
                update={} if see_target else {"escalated_to": None}
            )
            for i in result.items
        ],
        total=result.total,
        total_is_estimate=result.total_is_estimate,
        page=result.page,
        page_size=result.page_size,
        has_more=result.has_more,
        next_cursor=result.next_cursor,
    )
