"""The SLA policy a ticket's workflow runs under, as a snapshot: the two clocks' targets,
the business-hours calendar and the escalation steps. Pure data, no I/O."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from helpdesk.business_hours import WorkingCalendar


class SlaClockKind(StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class EscalationAction(StrEnum):
    NOTIFY_ASSIGNEE = "notify_assignee"
    NOTIFY_MANAGERS = "notify_managers"
    ESCALATE = "escalate"
    RAISE_PRIORITY = "raise_priority"
    REASSIGN = "reassign"


PRIORITY_ORDER: tuple[str, ...] = ("LOW", "MEDIUM", "HIGH", "CRITICAL")


class CalendarSpec(BaseModel):
    """A business-hours calendar as stored: weekly hours in a time zone, minus holidays."""

    # Frozen, as the whole snapshot: one object is shared by every ticket under it (`shared`).
    model_config = ConfigDict(frozen=True)

    time_zone: str = "UTC"
    weekly_hours: dict[str, list[list[str]]] = Field(default_factory=dict)
    holidays: list[str] = Field(default_factory=list)

    def calendar(self) -> WorkingCalendar:
        return _calendar(
            self.time_zone,
            tuple(
                sorted(
                    (day, tuple(tuple(p) for p in spans))
                    for day, spans in self.weekly_hours.items()
                )
            ),
            tuple(sorted(self.holidays)),
        )


@lru_cache(maxsize=64)
def _calendar(
    time_zone: str,
    weekly: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...],
    holidays: tuple[str, ...],
) -> WorkingCalendar:
    return WorkingCalendar.from_spec(time_zone, {day: spans for day, spans in weekly}, holidays)


_ALWAYS = WorkingCalendar.always()


class EscalationStep(BaseModel):
    """One escalation rule as it was when the snapshot was taken."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    clock: SlaClockKind
    threshold_percent: int
    level: int
    actions: list[EscalationAction]
    target_user_id: str | None = None

    @property
    def key(self) -> str:
        """Identity of the threshold crossing: fires once, whatever the priority does."""
        return f"{self.clock.value}:{self.threshold_percent}"


class SlaPolicySnapshot(BaseModel):
    """The policy in force for a priority, in seconds (the settings scale policy minutes).
    Frozen: a snapshot is replaced, never changed, so equal ones are shared (`shared`)."""

    model_config = ConfigDict(frozen=True)

    priority: str
    first_response_seconds: float
    resolution_seconds: float
    calendar: CalendarSpec | None = None
    steps: list[EscalationStep] = Field(default_factory=list)
    at_risk_percent: int = 75
    auto_close_seconds: float = 7 * 24 * 3600.0

    def target(self, kind: SlaClockKind) -> float:
        if kind is SlaClockKind.FIRST_RESPONSE:
            return self.first_response_seconds
        return self.resolution_seconds

    def working_calendar(self) -> WorkingCalendar:
        return self.calendar.calendar() if self.calendar else _ALWAYS


# Equal snapshots, one object: every cached ticket workflow carries its policy (calendar,
# escalation steps: about 7 KB decoded), and a help desk has a handful of distinct ones.
# Bounded: a burst of distinct snapshots (policies edited often) starts it afresh.
_SHARED: dict[str, SlaPolicySnapshot] = {}
_SHARED_MAX = 256


def shared(policy: SlaPolicySnapshot) -> SlaPolicySnapshot:
    """The one object equal to `policy` (itself the first time it is seen). Safe to share:
    snapshots are frozen and nothing changes their lists."""
    key = policy.model_dump_json()
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        found = _SHARED.setdefault(key, policy)
    return found
