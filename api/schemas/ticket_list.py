"""Query and response of GET /tickets (the list)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from models.enums import Priority, TicketStatus

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


def _split_commas(value: Any) -> Any:
    """`status=OPEN&status=IN_PROGRESS` and `status=OPEN,IN_PROGRESS` mean the same."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


class TicketQuery(BaseModel):
    """Filters, ordering and page of the ticket list. Unknown parameters are refused (422).

    Several `status`/`priority` values match any of them; several `tag`s must all match;
    `q` matches tickets whose title or description holds every word. Dates without a zone
    are UTC; ranges include both ends.
    """

    model_config = ConfigDict(extra="forbid")

    status: list[TicketStatus] = Field(default_factory=list, max_length=4)
    priority: list[Priority] = Field(default_factory=list, max_length=4)
    category_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | Literal["unassigned", "me"] | None = Field(
        None, description="a user id, `me`, or `unassigned`"
    )
    requester_id: uuid.UUID | Literal["me"] | None = Field(
        None, description="a user id or `me` (end users always see only their own)"
    )
    tag: list[Tag] = Field(default_factory=list, max_length=10)
    escalated: bool | None = None
    sla: Literal["breached", "at_risk"] | None = Field(
        None, description="tickets whose SLA is breached, or at risk (past the at-risk mark)"
    )
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    q: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    sort: Literal["created_at", "updated_at", "priority", "due_date"] = "created_at"
    order: Literal["asc", "desc"] = "desc"
    page: int = Field(1, ge=1)
    page_size: int = Field(25, ge=1, description="at most the server's max_page_size")
    cursor: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        None, description="next_cursor of the previous page (keyset pagination)"
    )

    @field_validator("status", "priority", "tag", mode="before")
    @classmethod
    def _multi(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _ranges(self) -> TicketQuery:
        for start, end in (("created_from", "created_to"), ("updated_from", "updated_to")):
            low, high = getattr(self, start), getattr(self, end)
            if low is not None and high is not None and low > high:
                raise ValueError(f"{start} is after {end}")
        return self

    @field_validator("created_from", "created_to", "updated_from", "updated_to")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class TicketListItem(BaseModel):
    id: uuid.UUID
    number: int
    title: str | None = Field(description="null when the ticket's data was disposed of")
    status: TicketStatus
    priority: Priority
    category_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    requester_id: uuid.UUID
    tags: list[str]
    escalated: bool
    escalation_level: int
    escalated_at: datetime | None = Field(description="When the ticket was last escalated")
    escalated_to: uuid.UUID | None = Field(
        description="Who the last escalation went to (null for end users)"
    )
    due_date: datetime | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None


class TicketListPage(BaseModel):
    """A page of tickets. `total` is exact unless `total_is_estimate`, when it is a lower
    bound (counting stops at a cap); follow `next_cursor` for the next page."""

    items: list[TicketListItem]
    total: int
    total_is_estimate: bool
    page: int | None
    page_size: int
    has_more: bool
    next_cursor: str | None
