"""The pure SLA core: clocks, pause/resume, recompute, escalation schedule, views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.rules import escalation, sla
from helpdesk.rules.sla_policy import (
    CalendarSpec,
    EscalationAction,
    EscalationStep,
    SlaClockKind,
    SlaPolicySnapshot,
)

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # a Monday
FR, RES = SlaClockKind.FIRST_RESPONSE, SlaClockKind.RESOLUTION


def steps() -> list[EscalationStep]:
    return [
        EscalationStep(
            rule_id="r1",
            clock=FR,
            threshold_percent=75,
            level=1,
            actions=[EscalationAction.NOTIFY_ASSIGNEE],
        ),
        EscalationStep(
            rule_id="r2",
            clock=FR,
            threshold_percent=100,
            level=2,
            actions=[EscalationAction.ESCALATE, EscalationAction.NOTIFY_MANAGERS],
        ),
        EscalationStep(
            rule_id="r3",
            clock=RES,
            threshold_percent=75,
            level=1,
            actions=[EscalationAction.NOTIFY_ASSIGNEE],
        ),
        EscalationStep(
            rule_id="r4",
            clock=RES,
            threshold_percent=100,
            level=2,
            actions=[EscalationAction.ESCALATE, EscalationAction.NOTIFY_MANAGERS],
        ),
        EscalationStep(
            rule_id="r5",
            clock=RES,
            threshold_percent=150,
            level=3,
            actions=[EscalationAction.ESCALATE, EscalationAction.RAISE_PRIORITY],
        ),
    ]


def policy(priority: str = "HIGH", fr: float = 100, res: float = 400, **kw) -> SlaPolicySnapshot:
    return SlaPolicySnapshot(
        priority=priority,
        first_response_seconds=fr,
        resolution_seconds=res,
        steps=steps(),
        auto_close_seconds=1000,
        **kw,
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fire_all(state: sla.SlaState, now: datetime) -> list[sla.SlaEvent]:
    fired = sla.due_events(state, now)
    for event in fired:
        sla.mark_fired(state, event)
    return fired


def test_schedule_of_a_fresh_ticket_in_order() -> None:
    state = sla.start(policy(), T0)
    events = sla.pending_events(state)
    assert [(e.key, e.due_at) for e in events] == [
        ("sla:first_response:75", at(75)),
        ("sla:first_response:breach", at(100)),
        ("sla:first_response:100", at(100)),
        ("sla:resolution:75", at(300)),
        ("sla:resolution:breach", at(400)),
        ("sla:resolution:100", at(400)),
        ("sla:resolution:150", at(600)),
    ]
    assert sla.next_due(state) == at(75)


def test_each_level_fires_once() -> None:
    state = sla.start(policy(), T0)
    assert [e.key for e in fire_all(state, at(100))] == [
        "sla:first_response:75",
        "sla:first_response:breach",
        "sla:first_response:100",
    ]
    assert fire_all(state, at(100)) == []
    assert state.clocks[FR].breached_at == at(100)
    assert sla.next_due(state) == at(300)


def test_met_target_cancels_later_levels() -> None:
    state = sla.start(policy(), T0)
    fire_all(state, at(80))  # the 75% warning
    records = sla.fulfil_first_response(state, at(90))
    assert records[0].kind == "fulfilled" and records[0].details["met"] is True
    assert all(e.clock is not FR for e in sla.pending_events(state))
    # A second reply changes nothing.
    assert sla.fulfil_first_response(state, at(95)) == []


def test_pause_extends_the_deadline_by_the_waiting_time() -> None:
    state = sla.start(policy(), T0)
    sla.fulfil_first_response(state, at(10))
    assert sla.deadline(state, RES) == at(400)
    records = sla.pause(state, at(100))
    assert [r.kind for r in records] == ["paused"]
    assert sla.deadline(state, RES) is None
    assert sla.due_events(state, at(10_000)) == [  # only auto-close is due while waiting
        sla.SlaEvent(kind="auto_close", clock=None, due_at=at(1100), key="sla:auto_close")
    ]
    resumed = sla.resume(state, at(250))
    assert resumed[0].details["paused_seconds"] == 150
    assert sla.deadline(state, RES) == at(550)
    assert state.auto_close_at is None
    assert [e.key for e in fire_all(state, at(549))] == ["sla:resolution:75"]
    assert sla.next_due(state) == at(550)


def test_priority_change_keeps_elapsed_and_fires_overdue_marks_at_once() -> None:
    state = sla.start(policy("LOW", fr=100, res=400), T0)
    sla.fulfil_first_response(state, at(5))
    critical = policy("CRITICAL", fr=20, res=200)
    records = sla.change_policy(state, critical, at(180))
    assert records[0].details["to_priority"] == "CRITICAL"
    assert state.clocks[RES].elapsed_seconds == 180
    assert sla.deadline(state, RES) == at(200)
    # 75% of 200 = 150 s already passed: due immediately, at the change.
    assert [(e.key, e.due_at) for e in sla.due_events(state, at(180))] == [
        ("sla:resolution:75", at(180))
    ]
    # Loosening the target moves the deadline later, counted from the time kept.
    sla.change_policy(state, policy("LOW", fr=100, res=1000), at(190))
    assert sla.deadline(state, RES) == at(1000)


def test_close_stops_every_clock() -> None:
    state = sla.start(policy(), T0)
    records = sla.stop(state, at(50))
    assert {r.clock for r in records} == {FR, RES}
    assert sla.pending_events(state) == []
    assert sla.next_due(state) is None


def test_auto_close_event_and_views() -> None:
    state = sla.start(policy(), T0)
    sla.fulfil_first_response(state, at(30))
    sla.pause(state, at(100))
    views = {v.clock: v for v in sla.clock_views(state, at(200))}
    assert views[RES].paused and views[RES].deadline is None
    assert views[RES].remaining_seconds == 300
    assert views[FR].fulfilled_at == at(30) and not views[FR].breached
    [event] = fire_all(state, at(1100))
    assert event.kind == "auto_close"
    assert state.auto_close_at is None


def test_breached_view_shows_negative_remaining_and_due_dates() -> None:
    state = sla.start(policy(), T0)
    fire_all(state, at(150))
    views = {v.clock: v for v in sla.clock_views(state, at(150))}
    assert views[FR].breached and views[FR].remaining_seconds == -50
    assert views[FR].deadline == at(100)
    dates = sla.due_dates(state)
    assert dates.first_response_due_at == at(100)
    assert dates.resolution_due_at == at(400)
    assert dates.due_date == at(100)
    assert dates.at_risk_at == at(75)


def test_business_hours_policy_deadline() -> None:
    cal = CalendarSpec(
        time_zone="UTC", weekly_hours={"mon": [["09:00", "10:00"]], "tue": [["09:00", "10:00"]]}
    )
    state = sla.start(policy(fr=30 * 60, res=90 * 60, calendar=cal), T0)  # Monday 08:00
    assert sla.deadline(state, FR) == datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
    assert sla.deadline(state, RES) == datetime(2025, 3, 4, 9, 30, tzinfo=UTC)


def test_escalation_plans() -> None:
    plan = escalation.plan_escalation(steps()[4], "CRITICAL")
    assert plan.escalate and plan.level == 3 and plan.new_priority is None
    plan = escalation.plan_escalation(steps()[4], "MEDIUM")
    assert plan.new_priority == "HIGH"
    plan = escalation.plan_escalation(steps()[0], "LOW")
    assert not plan.escalate and plan.notify == ["assignee"]
    manual = escalation.plan_manual_escalation(2, "u-1")
    assert manual.escalated_to == "u-1" and "escalated_to" in manual.notify


def test_state_survives_a_round_trip_through_json() -> None:
    """Continue-as-new carries the state as JSON: the schedule must be identical after."""
    state = sla.start(policy(), T0)
    fire_all(state, at(90))
    sla.fulfil_first_response(state, at(95))
    sla.pause(state, at(120))
    sla.resume(state, at(130))
    copy = sla.SlaState.model_validate_json(state.model_dump_json())
    assert sla.pending_events(copy) == sla.pending_events(state)
    assert copy == state


operations = st.lists(
    st.tuples(
        st.sampled_from(["fire", "reply", "pause", "resume", "priority"]), st.integers(1, 120)
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_any_sequence_fires_each_event_at_most_once_and_never_early(
    ops: list[tuple[str, int]],
) -> None:
    state = sla.start(policy(), T0)
    now = T0
    seen: list[str] = []
    for op, step in ops:
        now += timedelta(seconds=step)
        if op == "fire":
            for event in fire_all(state, now):
                assert event.due_at <= now
                seen.append(event.key)
        elif op == "reply":
            sla.fulfil_first_response(state, now)
        elif op == "pause":
            sla.pause(state, now)
        elif op == "resume":
            sla.resume(state, now)
        else:
            sla.change_policy(
                state, policy("CRITICAL" if step % 2 else "LOW", fr=step, res=4 * step), now
            )
        # The clock never runs backwards and a paused clock does not move.
        for kind in SlaClockKind:
            assert sla.elapsed(state, kind, now) >= state.clocks[kind].elapsed_seconds
    once = [k for k in seen if k != "sla:auto_close"]  # auto-close re-arms on each pause
    assert len(once) == len(set(once))
    # Whatever happened, firing catches up completely and leaves nothing overdue.
    fire_all(state, now)
    assert sla.due_events(state, now) == []
    assert all(e.due_at > now for e in sla.pending_events(state))


def test_only_a_public_staff_reply_fulfils_first_response() -> None:
    from helpdesk.rules.contracts import ChangeEvent
    from workflows.ticket_checks import is_public_staff_reply

    def event(action: str = "comment_added", **changes: object) -> ChangeEvent:
        return ChangeEvent(action=action, request_id="r", changes=changes)

    # The comments area decides and says so: its flag wins.
    assert is_public_staff_reply(event(internal=False, author_role="END_USER", first_response=True))
    assert not is_public_staff_reply(
        event(internal=False, author_role="SUPPORT_AGENT", first_response=False)
    )
    # Without the flag: public, by staff, not by the help desk itself.
    assert is_public_staff_reply(event(internal=False, author_role="SUPPORT_AGENT"))
    assert not is_public_staff_reply(event(internal=True, author_role="SUPPORT_AGENT"))
    assert not is_public_staff_reply(event(internal=False, author_role="END_USER"))
    assert not is_public_staff_reply(event(internal=False, author_role="SYSTEM"))
    assert not is_public_staff_reply(event("edited", internal=False, author_role="MANAGER"))
