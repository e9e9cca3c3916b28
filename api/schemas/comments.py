"""Requests and responses of the comment routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from models.enums import TicketStatus

# The body is PHI: it is sealed before it is stored and never logged. Its length is capped
# here (and by `settings.comment_max_chars`, checked by the route).
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommentCreate(_In):
    body: Body
    is_internal: bool = Field(
        False, description="An internal note, for staff only (an end user sending true: 422)"
    )


class CommentUpdate(_In):
    """Only the body of a comment changes; public stays public, internal stays internal."""

    body: Body


class CommentOut(BaseModel):
    id: uuid.UUID
    ticket_id: uuid.UUID
    author_id: uuid.UUID
    body: str
    is_internal: bool
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None
    ticket_status: TicketStatus | None = Field(
        None,
        description="On POST: the ticket's status once the comment is on its timeline "
        "(a requester's reply reopens a RESOLVED ticket)",
    )


class CommentPageOut(BaseModel):
    items: list[CommentOut]
    page: int
    page_size: int
    has_more: bool
