"""Requests and responses of the ticket command routes and of GET /tickets/{id}."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.schemas.attachments import AttachmentOut
from helpdesk.rules.sla import SlaClockView
from models.enums import Priority, TicketStatus

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
# Tags are labels, not free text: a slug keeps PHI out of the plaintext tag index.
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$"),
]
Tags = Annotated[list[Tag], Field(max_length=20)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TicketCreate(_In):
    title: Title
    description: Description | None = None
    priority: Priority = Priority.MEDIUM
    category_id: uuid.UUID | None = None
    tags: Tags = Field(default_factory=list)
    due_date: AwareDatetime | None = None


class TicketUpdate(_In):
    """Partial update: only the fields sent change; `description`, `category_id` and
    `due_date` may be sent as null to clear them. End users may change title, description
    and tags of their own tickets (any other field: 403, `helpdesk.policy`); staff every
    field."""

    title: Title | None = None
    description: Description | None = None
    priority: Priority | None = None
    category_id: uuid.UUID | None = None
    tags: Tags | None = None
    due_date: AwareDatetime | None = None

    @model_validator(mode="after")
    def _something_and_no_bad_nulls(self) -> TicketUpdate:
        sent = self.model_fields_set
        if not sent:
            raise ValueError("send at least one field to change")
        for name in ("title", "priority", "tags"):
            if name in sent and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class StatusChangeIn(_In):
    status: TicketStatus
    note: Note | None = Field(None, description="Why (kept encrypted in the ticket's history)")


class AssignIn(_In):
    """Either `agent_id` (an active staff member) or `"auto": true` (least-loaded agent)."""

    agent_id: uuid.UUID | None = None
    auto: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> AssignIn:
        if self.auto == (self.agent_id is not None):
            raise ValueError("give either agent_id or auto: true")
        return self


class WorkflowStateOut(BaseModel):
    """The live state the ticket's workflow reports (absent when it cannot answer now)."""

    status: TicketStatus
    priority: Priority
    assignee_id: uuid.UUID | None
    escalated: bool
    escalation_level: int
    version: int


class TicketOut(BaseModel):
    id: uuid.UUID
    number: int
    title: str | None
    description: str | None
    status: TicketStatus
    priority: Priority
    category_id: uuid.UUID | None
    tags: list[str]
    requester_id: uuid.UUID
    assignee_id: uuid.UUID | None
    due_date: datetime | None
    escalated: bool
    escalation_level: int
    escalated_at: datetime | None = Field(description="When the ticket was last escalated")
    escalated_to: uuid.UUID | None = Field(
        description="Who the last escalation went to: the person named by the manual call or "
        "the escalation rule, else the manager the help desk picked (null for end users, "
        "and when no manager was active)"
    )
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    version: int
    workflow: WorkflowStateOut | None = None
    sla: list[SlaClockView] = Field(
        default_factory=list, description="Each SLA clock, from the workflow's live state"
    )
    attachments: list[AttachmentOut] | None = Field(
        None, description="On GET /tickets/{id}: attachments the caller may see, with scan state"
    )


class HistoryEntryOut(BaseModel):
    id: uuid.UUID
    at: datetime
    actor_id: uuid.UUID | None
    action: str
    changes: dict[str, Any] = Field(
        description="old → new per field; title and description record only that they changed"
    )
    note: str | None = None
