"""SLA policies, business calendars and escalation rules: CRUD for administrators, the
policy snapshot a ticket workflow runs under, and the `sla=` list filter.

Services only flush; the caller's unit of work commits. Every write is audited (ids, field
names and numbers only: no PHI lives in these tables).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, not_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.business_hours import CalendarError, WorkingCalendar
from helpdesk.errors import Conflict, NotFound, ValidationFailed
from helpdesk.rules.sla_policy import (
    CalendarSpec,
    EscalationAction,
    EscalationStep,
    SlaClockKind,
    SlaPolicySnapshot,
)
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from models.enums import Priority, Role, TicketStatus
from models.sla import BusinessCalendar, EscalationRule, SlaPolicy
from models.ticket import Ticket
from models.user import User

# Used when a priority has no policy row (an administrator deleted it): the seeded values.
BUILT_IN_TARGETS: dict[str, tuple[int, int]] = {
    "CRITICAL": (30, 4 * 60),
    "HIGH": (2 * 60, 8 * 60),
    "MEDIUM": (8 * 60, 3 * 24 * 60),
    "LOW": (24 * 60, 5 * 24 * 60),
}


def _check_calendar(time_zone: str, weekly_hours: dict[str, Any], holidays: Sequence[date]) -> None:
    try:
        WorkingCalendar.from_spec(time_zone, weekly_hours, holidays)
    except CalendarError as exc:
        raise ValidationFailed(str(exc), details={"field": "calendar"}) from exc


async def _flush_unique(session: AsyncSession, what: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{what} already exists") from exc


# --- business calendars ---------------------------------------------------------------


async def list_calendars(session: AsyncSession) -> list[BusinessCalendar]:
    return list(await session.scalars(select(BusinessCalendar).order_by(BusinessCalendar.name)))


async def get_calendar(session: AsyncSession, calendar_id: uuid.UUID) -> BusinessCalendar:
    row = await session.get(BusinessCalendar, calendar_id)
    if row is None:
        raise NotFound("no such business calendar")
    return row


async def save_calendar(
    session: AsyncSession,
    runtime: Runtime,
    *,
    calendar_id: uuid.UUID | None,
    name: str,
    time_zone: str,
    weekly_hours: dict[str, list[list[str]]],
    holidays: Sequence[date],
) -> BusinessCalendar:
    """Create (calendar_id None) or replace a calendar; the hours are validated first."""
    _check_calendar(time_zone, weekly_hours, holidays)
    if calendar_id is None:
        row = BusinessCalendar(id=uuid.uuid4())
        session.add(row)
        action = "business_calendar.create"
    else:
        row = await get_calendar(session, calendar_id)
        action = "business_calendar.update"
    row.name = name
    row.time_zone = time_zone
    row.weekly_hours = weekly_hours
    row.holidays = sorted(d.isoformat() for d in set(holidays))
    await _flush_unique(session, "a calendar with this name")
    await runtime.audit.record(
        session,
        action,
        table="business_calendars",
        record_id=row.id,
        details={"time_zone": time_zone, "holidays": len(row.holidays)},
    )
    return row


async def delete_calendar(session: AsyncSession, runtime: Runtime, calendar_id: uuid.UUID) -> None:
    row = await get_calendar(session, calendar_id)
    in_use = await session.scalar(
        select(func.count()).select_from(SlaPolicy).where(SlaPolicy.calendar_id == calendar_id)
    )
    if in_use:
        raise Conflict("this calendar is used by an SLA policy", details={"policies": in_use})
    await session.delete(row)
    await session.flush()
    await runtime.audit.record(
        session, "business_calendar.delete", table="business_calendars", record_id=calendar_id
    )


# --- SLA policies ---------------------------------------------------------------------


async def list_policies(session: AsyncSession) -> list[SlaPolicy]:
    rows = list(await session.scalars(select(SlaPolicy)))
    order = {p.value: i for i, p in enumerate(Priority)}
    return sorted(rows, key=lambda r: order[r.priority])


async def get_policy(session: AsyncSession, policy_id: uuid.UUID) -> SlaPolicy:
    row = await session.get(SlaPolicy, policy_id)
    if row is None:
        raise NotFound("no such SLA policy")
    return row


async def save_policy(
    session: AsyncSession,
    runtime: Runtime,
    *,
    policy_id: uuid.UUID | None,
    priority: Priority,
    first_response_minutes: int,
    resolution_minutes: int,
    calendar_id: uuid.UUID | None,
) -> SlaPolicy:
    """Create or replace the policy of a priority (one per priority: a second is a 409)."""
    if calendar_id is not None and await session.get(BusinessCalendar, calendar_id) is None:
        raise ValidationFailed("no such business calendar", details={"field": "calendar_id"})
    if first_response_minutes > resolution_minutes:
        raise ValidationFailed(
            "the first-response target cannot exceed the resolution target",
            details={"field": "first_response_minutes"},
        )
    if policy_id is None:
        row = SlaPolicy(id=uuid.uuid4())
        session.add(row)
        action = "sla_policy.create"
        before: dict[str, Any] = {}
    else:
        row = await get_policy(session, policy_id)
        action = "sla_policy.update"
        before = {
            "priority": row.priority,
            "first_response_minutes": row.first_response_minutes,
            "resolution_minutes": row.resolution_minutes,
            "calendar_id": str(row.calendar_id) if row.calendar_id else None,
        }
    row.priority = priority.value
    row.first_response_minutes = first_response_minutes
    row.resolution_minutes = resolution_minutes
    row.calendar_id = calendar_id
    await _flush_unique(session, "a policy for this priority")
    after = {
        "priority": row.priority,
        "first_response_minutes": first_response_minutes,
        "resolution_minutes": resolution_minutes,
        "calendar_id": str(calendar_id) if calendar_id else None,
    }
    await runtime.audit.record(
        session,
        action,
        table="sla_policies",
        record_id=row.id,
        details={"before": before, "after": after},
    )
    return row


async def delete_policy(session: AsyncSession, runtime: Runtime, policy_id: uuid.UUID) -> None:
    """Without a row the priority falls back to the built-in defaults (see BUILT_IN_TARGETS)."""
    row = await get_policy(session, policy_id)
    await session.delete(row)
    await session.flush()
    await runtime.audit.record(
        session,
        "sla_policy.delete",
        table="sla_policies",
        record_id=policy_id,
        details={"priority": row.priority},
    )


# --- escalation rules -------------------------------------------------------------------


async def list_rules(
    session: AsyncSession, *, priority: Priority | None = None, clock: str | None = None
) -> list[EscalationRule]:
    query = select(EscalationRule)
    if priority is not None:
        query = query.where(EscalationRule.priority == priority.value)
    if clock is not None:
        query = query.where(EscalationRule.clock == clock)
    rows = list(await session.scalars(query))
    order = {p.value: i for i, p in enumerate(Priority)}
    return sorted(rows, key=lambda r: (order[r.priority], r.clock, r.threshold_percent))


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> EscalationRule:
    row = await session.get(EscalationRule, rule_id)
    if row is None:
        raise NotFound("no such escalation rule")
    return row


async def save_rule(
    session: AsyncSession,
    runtime: Runtime,
    *,
    rule_id: uuid.UUID | None,
    priority: Priority,
    clock: str,
    threshold_percent: int,
    actions: Sequence[EscalationAction],
    level: int,
    target_user_id: uuid.UUID | None,
    enabled: bool,
) -> EscalationRule:
    """Create or replace a rule; (priority, clock, threshold) is unique (409 otherwise)."""
    if target_user_id is not None:
        target = await session.get(User, target_user_id)
        if target is None or not target.is_active or target.role == Role.END_USER.value:
            raise ValidationFailed(
                "the target must be an active staff member", details={"field": "target_user_id"}
            )
    if rule_id is None:
        row = EscalationRule(id=uuid.uuid4())
        session.add(row)
        action = "escalation_rule.create"
    else:
        row = await get_rule(session, rule_id)
        action = "escalation_rule.update"
    row.priority = priority.value
    row.clock = clock
    row.threshold_percent = threshold_percent
    row.actions = list(dict.fromkeys(a.value for a in actions))
    row.level = level
    row.target_user_id = target_user_id
    row.enabled = enabled
    await _flush_unique(session, "a rule for this priority, clock and threshold")
    await runtime.audit.record(
        session,
        action,
        table="escalation_rules",
        record_id=row.id,
        details={
            "priority": row.priority,
            "clock": clock,
            "threshold_percent": threshold_percent,
            "level": level,
            "actions": row.actions,
            "enabled": enabled,
        },
    )
    return row


async def delete_rule(session: AsyncSession, runtime: Runtime, rule_id: uuid.UUID) -> None:
    row = await get_rule(session, rule_id)
    await session.delete(row)
    await session.flush()
    await runtime.audit.record(
        session, "escalation_rule.delete", table="escalation_rules", record_id=rule_id
    )


# --- the snapshot a workflow runs under --------------------------------------------------


async def policy_snapshot(
    session: AsyncSession, settings: Settings, priority: Priority | str
) -> SlaPolicySnapshot:
    """The policy in force for `priority` now, in seconds (policy minutes times the
    `sla_seconds_per_minute` setting), with its calendar and enabled escalation rules."""
    priority = Priority(priority)
    scale = settings.sla_seconds_per_minute
    row = await session.scalar(select(SlaPolicy).where(SlaPolicy.priority == priority.value))
    first, resolution = (
        (row.first_response_minutes, row.resolution_minutes)
        if row
        else BUILT_IN_TARGETS[priority.value]
    )
    calendar = None
    if row is not None and row.calendar_id is not None:
        cal = await session.get(BusinessCalendar, row.calendar_id)
        if cal is not None:
            calendar = CalendarSpec(
                time_zone=cal.time_zone, weekly_hours=cal.weekly_hours, holidays=list(cal.holidays)
            )
    rules = await session.scalars(
        select(EscalationRule).where(
            EscalationRule.priority == priority.value, EscalationRule.enabled.is_(True)
        )
    )
    steps = [
        EscalationStep(
            rule_id=str(rule.id),
            clock=SlaClockKind(rule.clock),
            threshold_percent=rule.threshold_percent,
            level=rule.level,
            actions=[EscalationAction(a) for a in rule.actions],
            target_user_id=str(rule.target_user_id) if rule.target_user_id else None,
        )
        for rule in rules
    ]
    steps.sort(key=lambda s: (s.clock.value, s.threshold_percent))
    return SlaPolicySnapshot(
        priority=priority.value,
        first_response_seconds=first * scale,
        resolution_seconds=resolution * scale,
        calendar=calendar,
        steps=steps,
        at_risk_percent=settings.sla_at_risk_percent,
        auto_close_seconds=settings.sla_auto_close_minutes * scale,
    )


# --- the `sla=` filter of ticket lists ----------------------------------------------------

SlaFilter = Literal["breached", "at_risk"]
_LIVE = (TicketStatus.OPEN.value, TicketStatus.IN_PROGRESS.value)


def sla_condition(value: SlaFilter, now: datetime) -> ColumnElement[bool]:
    """A WHERE clause for `GET /tickets?sla=...`, exact at `now` even before the workflow's
    timer has written the breach (the due dates on the row are current).

    breached: a clock breached at some point, or a live ticket whose due date has passed.
    at_risk: a live ticket past its at-risk mark that is not breached.
    """
    overdue = and_(Ticket.status.in_(_LIVE), Ticket.due_date.is_not(None), Ticket.due_date <= now)
    breached = or_(Ticket.sla_breached_at.is_not(None), overdue)
    if value == "breached":
        return breached
    if value == "at_risk":
        return and_(
            Ticket.status.in_(_LIVE),
            Ticket.sla_at_risk_at.is_not(None),
            Ticket.sla_at_risk_at <= now,
            not_(breached),
        )
    raise ValidationFailed("sla must be breached or at_risk", details={"field": "sla"})
