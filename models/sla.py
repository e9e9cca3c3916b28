"""SLA policies (targets per priority), business-hours calendars and escalation rules.

Administrators edit these rows; a ticket's workflow takes a snapshot of the policy in force
for its priority when it starts (and again when its priority changes), so editing a policy
never moves the deadlines of tickets already running under the old one.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps, new_id
from models.enums import Priority, check_in

SLA_CLOCKS = ("first_response", "resolution")
ESCALATION_ACTIONS = (
    "notify_assignee",
    "notify_managers",
    "escalate",
    "raise_priority",
    "reassign",
)


def _check_values(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class BusinessCalendar(Timestamps, Base):
    """Working hours in one IANA time zone: {"mon": [["09:00", "17:00"]], ...} and holidays
    as ISO dates. A policy without a calendar counts time 24x7."""

    __tablename__ = "business_calendars"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    weekly_hours: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    holidays: Mapped[list[str]] = mapped_column(JSON, default=list)


class SlaPolicy(Timestamps, Base):
    """The targets in force for one priority."""

    __tablename__ = "sla_policies"
    __table_args__ = (
        CheckConstraint(check_in("priority", Priority), name="priority"),
        CheckConstraint("first_response_minutes > 0", name="first_response_positive"),
        CheckConstraint("resolution_minutes > 0", name="resolution_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    priority: Mapped[str] = mapped_column(String(10), unique=True)
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    calendar_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("business_calendars.id", ondelete="RESTRICT")
    )


class EscalationRule(Timestamps, Base):
    """At `threshold_percent` of a clock's target for a priority, run `actions`.

    `level` orders the rules (1 = first warning); `target_user_id` names who receives an
    `escalate` or `reassign` (none: the managers, or the least-loaded other agent)."""

    __tablename__ = "escalation_rules"
    __table_args__ = (
        CheckConstraint(check_in("priority", Priority), name="priority"),
        CheckConstraint(_check_values("clock", SLA_CLOCKS), name="clock"),
        CheckConstraint("threshold_percent > 0 AND threshold_percent <= 1000", name="threshold"),
        CheckConstraint("level > 0", name="level_positive"),
        UniqueConstraint("priority", "clock", "threshold_percent", name="uq_escalation_rule"),
        Index("ix_escalation_rules_priority", "priority", "clock", "threshold_percent"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    priority: Mapped[str] = mapped_column(String(10))
    clock: Mapped[str] = mapped_column(String(20))
    threshold_percent: Mapped[int] = mapped_column(Integer)
    actions: Mapped[list[str]] = mapped_column(JSON, default=list)
    level: Mapped[int] = mapped_column(Integer, default=1)
    target_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
