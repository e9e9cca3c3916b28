"""Queries and answers of /api/v1/analytics (figures only: no PHI, small cells null)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.enums import Priority, TicketStatus

MAX_PERIOD = timedelta(days=400)
MAX_POINTS = 5000  # intervals x groups answered by one series request


COUNTED_FROM = (
    "start of the period the figures count: the request's, back to its UTC hour's start (its"
    " UTC day's when the figures name exactly two dimensions, a tag counting as one)"
)
COUNTED_TO = "end (exclusive) of the period the figures count, on to a whole UTC hour (or day)"


class AnalyticsQuery(BaseModel):
    """A period (default: the last 30 days; dates without a zone are UTC; whole UTC hours,
    whole UTC days for figures on two dimensions; the answer's `from`/`to` say which)
    and filters, any of them together (a ticket counts when it matches all). Unknown
    parameters are refused (422)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: datetime | None = Field(None, alias="from", description="start (inclusive)")
    to: datetime | None = Field(None, description="end (exclusive); default now")
    status: TicketStatus | None = None
    priority: Priority | None = None
    category_id: uuid.UUID | Literal["none"] | None = Field(
        None, description="a category id, or `none` for tickets without one"
    )
    assignee_id: uuid.UUID | Literal["unassigned"] | None = None
    tag: str | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="a tag on the administrators' approved list (as the export's)",
    )

    @model_validator(mode="after")
    def _period(self) -> AnalyticsQuery:
        end = _utc(self.to) if self.to else datetime.now(UTC)
        start = _utc(self.from_) if self.from_ else end - timedelta(days=30)
        if start >= end:
            raise ValueError("`from` must be before `to`")
        if end - start > MAX_PERIOD:
            raise ValueError(f"the period may span at most {MAX_PERIOD.days} days")
        self.from_, self.to = start, end
        return self

    def filters(self) -> list[tuple[str, str]]:
        found = []
        if self.status is not None:
            found.append(("status", self.status.value))
        if self.priority is not None:
            found.append(("priority", self.priority.value))
        if self.category_id is not None:
            found.append(("category", str(self.category_id)))
        if self.assignee_id is not None:
            value = "none" if self.assignee_id == "unassigned" else str(self.assignee_id)
            found.append(("assignee", value))
        if self.tag is not None:
            found.append(("tag", self.tag))
        return found


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SeriesQuery(AnalyticsQuery):
    interval: Literal["hour", "day", "week", "month"] = "day"
    group_by: Literal["status", "priority", "category", "assignee"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> SeriesQuery:
        if self.from_ is None or self.to is None:  # pragma: no cover - set by _period
            return self
        step = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 28 * 86400}
        if (self.to - self.from_).total_seconds() / step[self.interval] > MAX_POINTS:
            raise ValueError(f"at most {MAX_POINTS} intervals: choose a longer interval")
        return self


class AgentsQuery(AnalyticsQuery):
    """The period and filters of the other routes (an `assignee_id` keeps that agent's row),
    with a sort and a page."""

    sort: Literal[
        "agent_id",
        "created",
        "resolved",
        "open_tickets",
        "weighted_load",
        "first_response_median",
        "resolution_median",
        "reopen_rate",
    ] = "resolved"
    order: Literal["asc", "desc"] = "desc"
    page: int = Field(1, ge=1, le=10_000)
    page_size: int = Field(25, ge=1, le=100)


class ExportQuery(AnalyticsQuery):
    format: Literal["csv", "jsonl"] = "csv"
    rows: Literal["ticket", "event"] = Field(
        "ticket",
        description="one row per ticket, or one per event (history entry) of those tickets",
    )
    stable_pseudonyms: bool = Field(
        False, description="administrators only: pseudonyms that stay the same across exports"
    )


# --- answers ----------------------------------------------------------------------------


class Durations(BaseModel):
    count: int | None
    median_seconds: int | None
    p90_seconds: int | None
    mean_seconds: int | None


class Clock(BaseModel):
    met: int | None
    breached: int | None
    achievement: float | None = Field(description="met / (met + breached)")


class Sla(BaseModel):
    first_response: Clock
    resolution: Clock


class Escalations(BaseModel):
    count: int | None
    by_level: dict[str, int | None]


class Csat(BaseModel):
    sent: int | None
    answered: int | None
    score: float | None = Field(description="share of answers rating 4 or 5")
    response_rate: float | None = Field(description="answered / sent")


class Measures(BaseModel):
    created: int | None
    resolved: int | None
    reopened: int | None
    first_response: Durations
    resolution: Durations
    first_response_business: Durations = Field(description="in the SLA calendar's hours")
    resolution_business: Durations = Field(description="in the SLA calendar's hours")
    sla: Sla
    escalations: Escalations
    reopen_rate: float | None
    one_touch_rate: float | None
    csat: Csat
    suppressed: bool = Field(description="some figure counted fewer than k tickets: null")


class BacklogGroup(BaseModel):
    status: str
    priority: str
    count: int | None
    ages: dict[str, int | None]


class Backlog(BaseModel):
    total: int | None
    groups: list[BacklogGroup]
    suppressed: bool


class Overview(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description=COUNTED_FROM)
    to: datetime = Field(description=COUNTED_TO)
    measures: Measures
    backlog: Backlog


class SeriesPoint(Measures):
    start: datetime
    group: str


class Series(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description=COUNTED_FROM)
    to: datetime = Field(description=COUNTED_TO)
    interval: str
    group_by: str | None
    points: list[SeriesPoint]


class AgentRow(Measures):
    agent_id: str
    open_tickets: int | None
    weighted_load: int | None


class AgentsPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description=COUNTED_FROM)
    to: datetime = Field(description=COUNTED_TO)
    items: list[AgentRow]
    total: int
    page: int
    page_size: int
