"""Pure SLA clock arithmetic for the ticket workflow: clocks, pause/resume, deadlines, what
is due when, and the clocks as the API and the read model show them. No I/O and no clock
reads: every function takes `now` (the workflow passes `workflow.now()`), so the same inputs
always give the same answer, in the workflow, on replay and in the tests. The policy the
clocks run under is in `helpdesk.rules.sla_policy`, escalation planning in
`helpdesk.rules.escalation`.

A clock measures working time (see `helpdesk.business_hours`) against a target. Its state is
`elapsed_seconds` banked before `running_since` plus, while running, the working time since
then. Pausing banks the elapsed time; resuming starts a new span; a priority change banks
the elapsed time and swaps the target. Deadlines and escalation instants are derived, never
stored, so nothing can drift out of step with the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from helpdesk.rules.sla_policy import EscalationStep, SlaClockKind, SlaPolicySnapshot, shared

# --- clock state ------------------------------------------------------------------------

ClockPhase = Literal["running", "paused", "fulfilled", "stopped"]


class SlaClock(BaseModel):
    kind: SlaClockKind
    target_seconds: float
    elapsed_seconds: float = 0.0
    running_since: datetime | None = None
    phase: ClockPhase = "running"
    started_at: datetime
    paused_at: datetime | None = None
    fulfilled_at: datetime | None = None
    stopped_at: datetime | None = None
    breached_at: datetime | None = None  # the deadline instant the breach was due at


class SlaState(BaseModel):
    """Everything the workflow carries for SLA, across continue-as-new."""

    policy: SlaPolicySnapshot
    clocks: dict[SlaClockKind, SlaClock]
    fired: list[str] = Field(default_factory=list)  # EscalationStep.key values
    auto_close_at: datetime | None = None
    closed: bool = False

    @field_validator("policy")
    @classmethod
    def _shared_policy(cls, policy: SlaPolicySnapshot) -> SlaPolicySnapshot:
        # One object per distinct policy across all the tickets a worker holds.
        return shared(policy)


class SlaRecord(BaseModel):
    """A fact for ticket history: fulfilment, pause, resume, stop, recompute."""

    kind: Literal["fulfilled", "paused", "resumed", "stopped", "recomputed"]
    clock: SlaClockKind | None
    at: datetime
    key: str  # idempotency key of the history row
    details: dict[str, str | float | bool | None] = Field(default_factory=dict)


class SlaEvent(BaseModel):
    """Something that is due at `due_at`: a breach, an escalation step, the auto-close."""

    kind: Literal["breach", "escalation", "auto_close"]
    clock: SlaClockKind | None
    due_at: datetime
    key: str
    step: EscalationStep | None = None


# --- starting and changing clocks ---------------------------------------------------------


def start(policy: SlaPolicySnapshot, now: datetime) -> SlaState:
    """Both clocks start at creation from the policy then in force."""
    clocks = {
        kind: SlaClock(
            kind=kind, target_seconds=policy.target(kind), running_since=now, started_at=now
        )
        for kind in SlaClockKind
    }
    return SlaState(policy=policy, clocks=clocks)


def elapsed(state: SlaState, kind: SlaClockKind, now: datetime) -> float:
    """Working seconds the clock has run up to `now`."""
    clock = state.clocks[kind]
    if clock.phase != "running" or clock.running_since is None:
        return clock.elapsed_seconds
    span = state.policy.working_calendar().working_time_between(clock.running_since, now)
    return clock.elapsed_seconds + span.total_seconds()


def _bank(state: SlaState, kind: SlaClockKind, now: datetime) -> SlaClock:
    clock = state.clocks[kind]
    if clock.phase == "running" and clock.running_since is not None:
        clock.elapsed_seconds = elapsed(state, kind, now)
        clock.running_since = now
    return clock


def fulfil_first_response(state: SlaState, now: datetime) -> list[SlaRecord]:
    """The first public agent reply stops the first-response clock (once)."""
    clock = state.clocks[SlaClockKind.FIRST_RESPONSE]
    if clock.phase in ("fulfilled", "stopped"):
        return []
    _bank(state, clock.kind, now)
    clock.phase = "fulfilled"
    clock.running_since = None
    clock.fulfilled_at = now
    return [
        SlaRecord(
            kind="fulfilled",
            clock=clock.kind,
            at=now,
            key=f"sla:{clock.kind.value}:fulfilled",
            details={
                "elapsed_seconds": round(clock.elapsed_seconds, 3),
                "target_seconds": clock.target_seconds,
                "met": clock.elapsed_seconds < clock.target_seconds,
            },
        )
    ]


def _stamp(now: datetime) -> int:
    """Milliseconds since the epoch: keeps repeated pause/resume history keys distinct
    (workflow time is replayed identically, so a retried activity reuses the key)."""
    return int(now.timestamp() * 1000)


def pause(state: SlaState, now: datetime) -> list[SlaRecord]:
    """RESOLVED: waiting on the requester. Running clocks pause; auto-close is armed."""
    records = []
    for clock in state.clocks.values():
        if clock.phase != "running":
            continue
        _bank(state, clock.kind, now)
        clock.phase = "paused"
        clock.running_since = None
        clock.paused_at = now
        records.append(
            SlaRecord(
                kind="paused",
                clock=clock.kind,
                at=now,
                key=f"sla:{clock.kind.value}:paused:{_stamp(now)}",
                details={"elapsed_seconds": round(clock.elapsed_seconds, 3)},
            )
        )
    state.auto_close_at = now + timedelta(seconds=state.policy.auto_close_seconds)
    return records


def resume(state: SlaState, now: datetime) -> list[SlaRecord]:
    """Reopened: paused clocks run again from their banked time; auto-close is disarmed."""
    records = []
    for clock in state.clocks.values():
        if clock.phase != "paused":
            continue
        paused_for = (now - clock.paused_at).total_seconds() if clock.paused_at else 0.0
        clock.phase = "running"
        clock.running_since = now
        clock.paused_at = None
        records.append(
            SlaRecord(
                kind="resumed",
                clock=clock.kind,
                at=now,
                key=f"sla:{clock.kind.value}:resumed:{_stamp(now)}",
                details={
                    "paused_seconds": round(paused_for, 3),
                    "elapsed_seconds": round(clock.elapsed_seconds, 3),
                },
            )
        )
    state.auto_close_at = None
    return records


def stop(state: SlaState, now: datetime) -> list[SlaRecord]:
    """CLOSED stops every clock for good; nothing fires afterwards."""
    records = []
    for clock in state.clocks.values():
        if clock.phase in ("fulfilled", "stopped"):
            continue
        _bank(state, clock.kind, now)
        clock.phase = "stopped"
        clock.running_since = None
        clock.stopped_at = now
        records.append(
            SlaRecord(
                kind="stopped",
                clock=clock.kind,
                at=now,
                key=f"sla:{clock.kind.value}:stopped",
                details={"elapsed_seconds": round(clock.elapsed_seconds, 3)},
            )
        )
    state.auto_close_at = None
    state.closed = True
    return records


def change_policy(state: SlaState, policy: SlaPolicySnapshot, now: datetime) -> list[SlaRecord]:
    """A priority change: targets come from the new policy, elapsed time is kept.

    The elapsed time is banked under the old calendar first, so time already worked counts
    as it was counted; steps already fired stay fired."""
    for kind in SlaClockKind:
        _bank(state, kind, now)
    old = state.policy
    state.policy = shared(policy)
    for clock in state.clocks.values():
        clock.target_seconds = policy.target(clock.kind)
    if state.auto_close_at is not None:
        paused_since = min(
            (c.paused_at for c in state.clocks.values() if c.paused_at is not None),
            default=now,
        )
        state.auto_close_at = paused_since + timedelta(seconds=policy.auto_close_seconds)
    return [
        SlaRecord(
            kind="recomputed",
            clock=None,
            at=now,
            key=f"sla:recomputed:{_stamp(now)}",
            details={
                "from_priority": old.priority,
                "to_priority": policy.priority,
                "first_response_target_seconds": policy.first_response_seconds,
                "resolution_target_seconds": policy.resolution_seconds,
            },
        )
    ]


# --- what is due when -------------------------------------------------------------------


def mark_instant(state: SlaState, kind: SlaClockKind, mark_seconds: float) -> datetime | None:
    """When the clock's working time reaches `mark_seconds`; None while it cannot.

    A mark already passed gives the moment it became known to be passed (the start of the
    current span, or the pause), so an overdue step is due immediately."""
    clock = state.clocks[kind]
    if clock.phase == "running" and clock.running_since is not None:
        if mark_seconds <= clock.elapsed_seconds:
            return clock.running_since
        return state.policy.working_calendar().add_working_time(
            clock.running_since, timedelta(seconds=mark_seconds - clock.elapsed_seconds)
        )
    if clock.phase == "paused" and mark_seconds <= clock.elapsed_seconds:
        return clock.paused_at
    return None


def deadline(state: SlaState, kind: SlaClockKind) -> datetime | None:
    """When the clock reaches its target (None when paused, fulfilled or stopped)."""
    clock = state.clocks[kind]
    if clock.phase != "running":
        return None
    if clock.breached_at is not None and clock.elapsed_seconds >= clock.target_seconds:
        return clock.breached_at  # overdue since before this span: show when it was due
    return mark_instant(state, kind, clock.target_seconds)


def _breach_key(kind: SlaClockKind) -> str:
    return f"sla:{kind.value}:breach"


def pending_events(state: SlaState) -> list[SlaEvent]:
    """Every event that will fire unless something changes, earliest first."""
    events: list[SlaEvent] = []
    for kind, clock in state.clocks.items():
        if clock.phase not in ("running", "paused"):
            continue  # a met target cancels its later levels; a stopped clock fires nothing
        if clock.breached_at is None:
            at = mark_instant(state, kind, clock.target_seconds)
            if at is not None:
                events.append(SlaEvent(kind="breach", clock=kind, due_at=at, key=_breach_key(kind)))
        for step in state.policy.steps:
            if step.clock is not kind or step.key in state.fired:
                continue
            at = mark_instant(state, kind, clock.target_seconds * step.threshold_percent / 100)
            if at is not None:
                events.append(
                    SlaEvent(
                        kind="escalation", clock=kind, due_at=at, key=f"sla:{step.key}", step=step
                    )
                )
    if state.auto_close_at is not None and not state.closed:
        events.append(
            SlaEvent(
                kind="auto_close", clock=None, due_at=state.auto_close_at, key="sla:auto_close"
            )
        )
    order = {"breach": 0, "escalation": 1, "auto_close": 2}
    events.sort(key=lambda e: (e.due_at, order[e.kind], e.step.threshold_percent if e.step else 0))
    return events


def due_events(state: SlaState, now: datetime) -> list[SlaEvent]:
    """Events due at or before `now`, earliest first."""
    return [event for event in pending_events(state) if event.due_at <= now]


def next_due(state: SlaState) -> datetime | None:
    """When the workflow must wake next for SLA (None: nothing pending)."""
    events = pending_events(state)
    return events[0].due_at if events else None


def mark_fired(state: SlaState, event: SlaEvent) -> None:
    """Record that `event` has been handled so it never fires again."""
    if event.kind == "breach" and event.clock is not None:
        state.clocks[event.clock].breached_at = event.due_at
    elif event.kind == "escalation" and event.step is not None:
        if event.step.key not in state.fired:
            state.fired.append(event.step.key)
    elif event.kind == "auto_close":
        state.auto_close_at = None


# --- what the API and the read model show -------------------------------------------------


class SlaClockView(BaseModel):
    """One clock as `GET /tickets/{id}` shows it."""

    clock: SlaClockKind
    target_seconds: float
    elapsed_seconds: float
    deadline: datetime | None = Field(description="When the target is reached; null if paused")
    remaining_seconds: float = Field(description="Working seconds left; negative once breached")
    paused: bool
    breached: bool
    fulfilled_at: datetime | None
    stopped: bool


def clock_views(state: SlaState, now: datetime) -> list[SlaClockView]:
    views = []
    for kind in SlaClockKind:
        clock = state.clocks[kind]
        spent = elapsed(state, kind, now)
        views.append(
            SlaClockView(
                clock=kind,
                target_seconds=clock.target_seconds,
                elapsed_seconds=round(spent, 3),
                deadline=deadline(state, kind),
                remaining_seconds=round(clock.target_seconds - spent, 3),
                paused=clock.phase == "paused",
                breached=clock.breached_at is not None or spent >= clock.target_seconds,
                fulfilled_at=clock.fulfilled_at,
                stopped=clock.phase == "stopped",
            )
        )
    return views


class SlaDueDates(BaseModel):
    """The SLA columns of the tickets row (the read model lists filter on them)."""

    due_date: datetime | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    at_risk_at: datetime | None


def due_dates(state: SlaState) -> SlaDueDates:
    first = deadline(state, SlaClockKind.FIRST_RESPONSE)
    resolution = deadline(state, SlaClockKind.RESOLUTION)
    risks = [
        mark_instant(state, kind, clock.target_seconds * state.policy.at_risk_percent / 100)
        for kind, clock in state.clocks.items()
        if clock.phase == "running"
    ]
    known = [r for r in risks if r is not None]
    dues = [d for d in (first, resolution) if d is not None]
    return SlaDueDates(
        due_date=min(dues) if dues else None,
        first_response_due_at=first,
        resolution_due_at=resolution,
        at_risk_at=min(known) if known else None,
    )
