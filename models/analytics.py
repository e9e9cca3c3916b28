"""Analytics read model: one fact row per ticket and hourly rollups (migration 0007).

Both are written by the transaction that persists each ticket change
(`helpdesk.analytics.facts.record`), never by scanning tickets on a request. No PHI: ids,
enumerations, timestamps and counts only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class TicketFact(Base):
    """What the measures of one ticket are computed from (see README, Analytics)."""

    __tablename__ = "ticket_facts"
    __table_args__ = (
        # The open backlog (status, priority, age) and an agent's current load.
        Index("ix_ticket_facts_status_priority_created", "status", "priority", "created_at"),
        Index("ix_ticket_facts_assignee_status", "assignee_id", "status"),
        # A category with other filters (three dimensions, or two by hour: from the facts).
        Index("ix_ticket_facts_category_status_priority", "category_id", "status", "priority"),
        Index("ix_ticket_facts_created", "created_at"),
    )

    ticket_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[str] = mapped_column(String(10))
    category_id: Mapped[uuid.UUID | None]
    assignee_id: Mapped[uuid.UUID | None]
    first_response_at: Mapped[datetime | None]
    first_resolved_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]  # the latest resolution, None while reopened
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    last_reopened_at: Mapped[datetime | None]
    staff_replies: Mapped[int] = mapped_column(Integer, default=0)  # public staff replies
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None]
    first_response_breached_at: Mapped[datetime | None]
    resolution_breached_at: Mapped[datetime | None]
    # Durations in business time: the working hours of the SLA calendar of the ticket's
    # priority (24x7 without one), computed when the event happened.
    first_response_business_seconds: Mapped[int | None] = mapped_column(Integer)
    resolution_business_seconds: Mapped[int | None] = mapped_column(Integer)
    # The latest survey sent and not cancelled (helpdesk.services.satisfaction).
    csat_sent_at: Mapped[datetime | None]
    csat_answered_at: Mapped[datetime | None]
    csat_rating: Mapped[int | None] = mapped_column(Integer)
    # The blind tokens of the approved tags (HELPDESK_ANALYTICS_EXPORT_TAGS) the ticket is
    # counted under in the rollups, sorted; NULL for none (migration 0009).
    tag_tokens: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class AnalyticsRollup(Base):
    """Sums of the ticket facts' contributions per UTC hour (and day) and dimension value,
    or pair of dimension values.

    `metrics` maps a measure name to an integer: counts, sums of seconds, and log-bucketed
    histogram counts (`fr:<bucket>`, `res:<bucket>`; helpdesk.analytics.histogram), all of
    which add up across hours and values, so any period or interval is a sum of rows."""

    __tablename__ = "analytics_rollups"
    __table_args__ = (
        # The cells of given values (of a dimension or a pair) over a period (0009).
        Index("ix_analytics_rollups_dim_value_hour", "dim", "value", "hour"),
    )

    # A dimension (`priority`) or a pair of them (`priority+category`, migration 0009),
    # with `@d` for the daily cells; a pair's value is its two values joined by `|`.
    dim: Mapped[str] = mapped_column(String(24), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(String(80), primary_key=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The metrics without their histograms, with each histogram's median and p90
    # (helpdesk.analytics.facts.summarise): what a point made of this one cell reads.
    # NULL on a cell not written since migration 0008 (readers then take `metrics`).
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
