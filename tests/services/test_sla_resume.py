"""`helpdesk.services.sla_resume.replay`: the clocks rebuilt from the SLA history rows equal
the clocks the workflow kept (pure: no database, no Temporal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from helpdesk.rules.sla import (
    SlaRecord,
    change_policy,
    due_dates,
    fulfil_first_response,
    pause,
    resume,
    start,
)
from helpdesk.rules.sla_policy import (
    EscalationAction,
    EscalationStep,
    SlaClockKind,
    SlaPolicySnapshot,
)
from helpdesk.services.sla_resume import SlaEntry, replay

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = SlaPolicySnapshot(
    priority="MEDIUM",
    first_response_seconds=3600,
    resolution_seconds=4 * 3600,
    steps=[
        EscalationStep(
            rule_id="r1",
            clock=SlaClockKind.RESOLUTION,
            threshold_percent=50,
            level=1,
            actions=[EscalationAction.NOTIFY_MANAGERS],
        )
    ],
)


def rows(records: list[SlaRecord]) -> list[SlaEntry]:
    """History rows as `record_sla` writes them."""
    return [
        SlaEntry(
            r.key, f"sla.{r.kind}", r.at, {"clock": r.clock.value if r.clock else None, **r.details}
        )
        for r in records
    ]


def test_replay_gives_back_the_workflows_clocks():
    state = start(POLICY, T0)
    history = rows(fulfil_first_response(state, T0 + timedelta(minutes=20)))
    # The 50% resolution step fired at 2 h (as the workflow records it).
    state.fired.append("resolution:50")
    history.append(
        SlaEntry(
            "sla:resolution:50",
            "sla.threshold",
            T0 + timedelta(hours=2, seconds=1),
            {"clock": "resolution", "threshold_percent": 50, "level": 1},
        )
    )
    history += rows(pause(state, T0 + timedelta(hours=3)))
    history += rows(resume(state, T0 + timedelta(hours=5)))
    high = POLICY.model_copy(
        update={"priority": "HIGH", "first_response_seconds": 1800, "resolution_seconds": 3 * 3600}
    )
    history += rows(change_policy(state, high, T0 + timedelta(hours=5, minutes=30)))
    # The resolution clock breached (3 h target, 3.5 h worked by 6 h 0 min).
    breach_due = T0 + timedelta(hours=5, minutes=30)
    state.clocks[SlaClockKind.RESOLUTION].breached_at = breach_due
    history.append(
        SlaEntry(
            "sla:resolution:breach",
            "sla.breached",
            breach_due + timedelta(seconds=2),
            {"clock": "resolution", "due_at": breach_due.isoformat()},
        )
    )

    rebuilt = replay(POLICY, T0, reversed(history))  # order of the rows does not matter
    assert rebuilt.clocks == state.clocks
    assert rebuilt.fired == state.fired
    assert rebuilt.auto_close_at == state.auto_close_at
    assert rebuilt.policy.resolution_seconds == 3 * 3600
    assert due_dates(rebuilt) == due_dates(state)


def test_a_ticket_without_sla_history_runs_from_its_creation():
    rebuilt = replay(POLICY, T0, [])
    clock = rebuilt.clocks[SlaClockKind.RESOLUTION]
    assert clock.started_at == clock.running_since == T0
    assert due_dates(rebuilt).resolution_due_at == T0 + timedelta(hours=4)


def test_a_resolved_ticket_stays_paused_with_its_auto_close():
    state = start(POLICY, T0)
    history = rows(pause(state, T0 + timedelta(minutes=45)))
    rebuilt = replay(POLICY, T0, history)
    assert rebuilt.clocks == state.clocks
    assert rebuilt.auto_close_at == T0 + timedelta(minutes=45, seconds=POLICY.auto_close_seconds)
