"""Requests and responses of the comment routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from models.enums import TicketStatus

# The body is PHI: it is sealed before it is stored and never logged. Its length is capped
# here (and by `settings.comment_max_chars`, checked by the route).
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Text(_In):
    """The comment's text is `content` (the seed's name). `body`, its earlier name, is still
    accepted as a deprecated alias; sending both, or neither, is refused (422)."""

    content: Body | None = Field(None, description="The comment's text (required)")
    body: Body | None = Field(
        None, deprecated=True, description="Deprecated alias of `content`; send `content`"
    )

    @model_validator(mode="before")
    @classmethod
    def _body_is_content(cls, data: Any) -> Any:
        # Moved before validation, so `content` alone is ever read (and checked).
        if isinstance(data, dict) and "body" in data:
            if "content" in data:
                raise ValueError("send `content` only (`body` is its deprecated alias)")
            data = {("content" if k == "body" else k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _has_text(self) -> _Text:
        if self.content is None:
            raise ValueError("send the comment's text as `content`")
        return self

    @property
    def text(self) -> str:
        return self.content or ""


class CommentCreate(_Text):
    is_internal: bool = Field(
        False, description="An internal note, for staff only (an end user sending true: 403)"
    )


class CommentUpdate(_Text):
    """Only the text of a comment changes; public stays public, internal stays internal."""


class CommentOut(BaseModel):
    id: uuid.UUID
    ticket_id: uuid.UUID
    author_id: uuid.UUID
    content: str
    body: str = Field(deprecated=True, description="Deprecated copy of `content`")
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
