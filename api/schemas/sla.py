"""API shapes of SLA policies, business calendars, escalation rules and escalation."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from helpdesk.rules.sla import SlaClockView
from helpdesk.rules.sla_policy import EscalationAction, SlaClockKind
from models.enums import Priority

__all__ = [
    "CalendarIn",
    "CalendarOut",
    "EscalateIn",
    "EscalateOut",
    "EscalationReason",
    "PolicyIn",
    "PolicyOut",
    "RuleIn",
    "RuleOut",
    "SlaClockView",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CalendarIn(_In):
    name: str = Field(min_length=1, max_length=100)
    time_zone: str = Field("UTC", min_length=1, max_length=64, examples=["Europe/Berlin"])
    weekly_hours: dict[
        Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        list[tuple[str, str]],
    ] = Field(
        description="Opening intervals per weekday in local time; a missing day is closed",
        examples=[{"mon": [["09:00", "12:00"], ["13:00", "17:00"]], "tue": [["09:00", "17:00"]]}],
    )
    holidays: list[date] = Field(default_factory=list, max_length=1000)


class CalendarOut(_Out):
    id: uuid.UUID
    name: str
    time_zone: str
    weekly_hours: dict[str, list[list[str]]]
    holidays: list[date]
    created_at: datetime
    updated_at: datetime


class PolicyIn(_In):
    priority: Priority
    first_response_minutes: int = Field(gt=0, le=525_600)
    resolution_minutes: int = Field(gt=0, le=525_600)
    calendar_id: uuid.UUID | None = Field(
        None, description="Business-hours calendar; none counts time 24x7"
    )


class PolicyOut(_Out):
    id: uuid.UUID
    priority: Priority
    first_response_minutes: int
    resolution_minutes: int
    calendar_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class RuleIn(_In):
    priority: Priority
    clock: SlaClockKind
    threshold_percent: int = Field(gt=0, le=1000, description="Share of the clock's target")
    actions: list[EscalationAction] = Field(min_length=1, max_length=5)
    level: int = Field(1, ge=1, le=10)
    target_user_id: uuid.UUID | None = Field(
        None, description="Who an escalate/reassign goes to (none: managers / least loaded)"
    )
    enabled: bool = True


class RuleOut(_Out):
    id: uuid.UUID
    priority: Priority
    clock: SlaClockKind
    threshold_percent: int
    actions: list[EscalationAction]
    level: int
    target_user_id: uuid.UUID | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class EscalationReason(StrEnum):
    """Why a person escalates (a code: free text belongs in a comment, where it is sealed)."""

    SLA_RISK = "sla_risk"
    CUSTOMER_IMPACT = "customer_impact"
    NEEDS_EXPERTISE = "needs_expertise"
    COMPLAINT = "complaint"
    OTHER = "other"


class EscalateIn(_In):
    """Every field is optional (the seed's escalate call has none): the body may be `{}` or
    absent altogether."""

    reason: EscalationReason | None = Field(
        None, description="Why (a code); none: recorded as `manual`"
    )
    escalated_to: uuid.UUID | None = Field(
        None,
        description="A staff member to escalate to (none: the active manager with the fewest "
        "open escalated tickets, and every manager is notified)",
    )


class EscalateOut(BaseModel):
    ticket_id: uuid.UUID
    escalated: bool
    escalation_level: int
    escalated_at: datetime | None
    escalated_to: uuid.UUID | None
