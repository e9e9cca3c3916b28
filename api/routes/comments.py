"""Routes: comments on a ticket (public replies and internal notes).

Adding goes through the ticket's workflow (its timeline shows the comment and its SLA clocks
hear it); reading, editing and deleting are database operations. Every route checks that the
caller may view the ticket (404 otherwise, 410 for a deleted ticket); internal notes are for
staff only (`helpdesk.policy.can_see_internal`). Rules: `helpdesk.services.comments`.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import AnyUser, RuntimeDep
from api.schemas.comments import CommentCreate, CommentOut, CommentPageOut, CommentUpdate
from helpdesk import errors
from helpdesk.runtime import Runtime
from helpdesk.services import comments
from models.enums import TicketStatus

router = APIRouter()

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="A retry with the same key adds the comment once",
    ),
]


def _out(view: comments.CommentView) -> CommentOut:
    state = view.workflow
    return CommentOut(
        id=view.id,
        ticket_id=view.ticket_id,
        author_id=view.author_id,
        content=view.body or "",
        body=view.body or "",
        is_internal=view.is_internal,
        created_at=view.created_at,
        updated_at=view.updated_at,
        edited_at=view.edited_at,
        ticket_status=TicketStatus(state.status.value) if state is not None else None,
    )


def _check_length(runtime: Runtime, body: str) -> None:
    limit = runtime.settings.comment_max_chars
    if len(body) > limit:
        raise errors.ValidationFailed(
            "the comment is too long", details={"field": "content", "max_chars": limit}
        )


@router.get("/tickets/{ticket_id}/comments", response_model=CommentPageOut)
async def list_comments(
    ticket_id: uuid.UUID,
    principal: AnyUser,
    runtime: RuntimeDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> CommentPageOut:
    """The ticket's comments, oldest first. End users never see internal notes."""
    result = await comments.list_comments(
        runtime, principal, ticket_id, page=page, page_size=page_size
    )
    return CommentPageOut(
        items=[_out(v) for v in result.items],
        page=result.page,
        page_size=result.page_size,
        has_more=result.has_more,
    )


@router.post(
    "/tickets/{ticket_id}/comments", status_code=status.HTTP_201_CREATED, response_model=CommentOut
)
async def add_comment(
    ticket_id: uuid.UUID,
    body: CommentCreate,
    principal: AnyUser,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CommentOut:
    """Reply on a ticket, or (staff) add an internal note. A public staff reply fulfils
    first response; the requester's reply reopens a RESOLVED ticket (setting
    `reopen_on_requester_reply`). A CLOSED ticket → 409; an internal note from an end
    user → 403."""
    _check_length(runtime, body.text)
    view = await comments.add(
        runtime,
        principal,
        ticket_id,
        body=body.text,
        internal=body.is_internal,
        idempotency_key=idempotency_key,
    )
    if view.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _out(view)


@router.put("/comments/{comment_id}", response_model=CommentOut)
async def edit_comment(
    comment_id: uuid.UUID, body: CommentUpdate, principal: AnyUser, runtime: RuntimeDep
) -> CommentOut:
    """Edit one's own comment (authors only, whatever their role; 403 for anyone else)."""
    _check_length(runtime, body.text)
    return _out(await comments.edit(runtime, principal, comment_id, body=body.text))


@router.delete("/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_comment(
    comment_id: uuid.UUID, principal: AnyUser, runtime: RuntimeDep
) -> Response:
    """Delete one's own comment, or (administrators) anyone's. The text is disposed of; the
    ticket's history and the audit log keep that it existed and was deleted."""
    await comments.delete(runtime, principal, comment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
