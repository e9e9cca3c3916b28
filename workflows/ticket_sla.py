"""The SLA side of TicketWorkflow: clocks, durable timers, escalation and auto-close.

A part composed into the workflow (`SlaClocks(workflow)`), so the SLA side stays in one place;
the decisions are the pure functions of `helpdesk.rules.sla`, this class only wires them to
workflow time, activities and the ticket's own change path (`workflows.ticket_host`):

- The clocks arrive with the workflow: started by its create activity (from the policy in
  force), resumed from the database when a workflow is started for an existing row
  (`helpdesk.services.sla_resume`), carried across continue-as-new.
- `_timeout()` is how long the main loop may sleep before the next SLA event; the loop
  sleeps with `workflow.wait_condition(..., timeout=...)` (a durable timer: it fires on time
  after a worker restart, and the state says what already fired, so nothing fires twice).
- `fire_due()` handles every event now due: breach, escalation steps, auto-close.
- `after_change(event)` reacts to accepted changes: a public staff reply fulfils first
  response, RESOLVED pauses, a reopen resumes, CLOSED stops, a priority change recomputes,
  an escalation (manual or automatic: the same `escalated` change) notifies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from helpdesk.notifications import NotificationKind
    from helpdesk.rules import escalation
    from helpdesk.rules import sla as clocks
    from helpdesk.rules.activity_contracts import (
        ActivityName,
        LoadPolicy,
        SlaHistoryEntry,
        SlaRecorded,
        SlaWrite,
        SlaWriteAndPush,
    )
    from helpdesk.rules.contracts import Actor, ChangeEvent, Failure, FieldUpdates
    from helpdesk.rules.escalation import EscalationPlan
    from helpdesk.rules.notify import PushEvent
    from helpdesk.rules.sla import SlaEvent, SlaRecord
    from helpdesk.rules.sla_policy import SlaPolicySnapshot
    from helpdesk.rules.transitions import Status
    from helpdesk.temporal import ui_text
    from workflows import local_first
    from workflows import ticket_sla_notify as sla_notify
    from workflows.ticket_checks import is_public_staff_reply
    from workflows.ticket_sla_notify import ClockName

if TYPE_CHECKING:
    from helpdesk.rules.contracts import PersistResult
    from workflows.ticket_host import TicketHost

_RETRY = RetryPolicy(
    maximum_interval=timedelta(seconds=10), non_retryable_error_types=[Failure.TICKET_GONE]
)
# Failures no retry can fix: raised at once, not retried as a regular activity.
_FINAL = frozenset({Failure.TICKET_GONE})
# Below this a timer is pointless (and a zero timeout is refused): handle the event now.
_MIN_TIMER = timedelta(milliseconds=1)
_LIVE = (Status.OPEN, Status.IN_PROGRESS, Status.RESOLVED)


class SlaClocks:
    """The SLA part of TicketWorkflow (see the module docstring), composed into it."""

    def __init__(self, host: TicketHost) -> None:
        self.host = host
        # The main loop's SLA timer and the instant it fires for (`wait`).
        self._timer: asyncio.Task[None] | None = None
        self._timer_due: datetime | None = None

    # --- activities ---------------------------------------------------------------------

    def _timeout_s(self) -> timedelta:
        return timedelta(seconds=self.host.config.activity_timeout_seconds)

    async def _load(self, priority: str) -> SlaPolicySnapshot:
        return await local_first.run(
            ActivityName.LOAD_SLA_POLICY,
            LoadPolicy(priority=priority),
            result_type=SlaPolicySnapshot,
            start_to_close=self._timeout_s(),
            retry_policy=_RETRY,
            summary=f"Load SLA policy {priority}",
        )

    def _write_input(
        self,
        records: list[SlaRecord],
        extra: list[SlaHistoryEntry] | None,
        breached_at: datetime | None,
    ) -> SlaWrite | None:
        """What `record_sla` writes: the entries and the due dates now (kept in state)."""
        s = self.host.ticket.sla
        if s is None:
            return None
        entries = [
            SlaHistoryEntry(
                event_key=r.key,
                action=f"sla.{r.kind}",
                at=r.at,
                changes={"clock": r.clock.value if r.clock else None, **r.details},
            )
            for r in records
        ] + (extra or [])
        due = clocks.due_dates(s)
        self.host.ticket.due_date = due.due_date
        return SlaWrite(
            ticket_id=self.host.ticket.ticket_id, entries=entries, due=due, breached_at=breached_at
        )

    async def _write(
        self,
        records: list[SlaRecord],
        *,
        extra: list[SlaHistoryEntry] | None = None,
        breached_at: datetime | None = None,
        summary: str,
    ) -> None:
        write = self._write_input(records, extra, breached_at)
        if write is None:
            return
        try:
            await local_first.run(
                ActivityName.RECORD_SLA,
                write,
                result_type=int,
                start_to_close=self._timeout_s(),
                retry_policy=_RETRY,
                summary=summary,
                final=_FINAL,
            )
        except FailureError as err:
            self._gone(err)

    async def _write_then_push(
        self,
        entry: SlaHistoryEntry,
        *,
        breached_at: datetime,
        push: PushEvent,
        clock: ClockName | None,
        summary: str,
    ) -> None:
        """Record one SLA fact and push it, in one activity (the push after the commit). A
        push that did not go out then is sent by the push activity."""
        write = self._write_input([], [entry], breached_at)
        if write is None:
            return
        try:
            recorded = await workflow.execute_activity(
                ActivityName.RECORD_SLA_THEN_PUSH,
                SlaWriteAndPush(
                    write=write,
                    push=sla_notify.push_input(self.host.ticket, push, entry.event_key, clock),
                ),
                result_type=SlaRecorded,
                start_to_close_timeout=self._timeout_s(),
                retry_policy=_RETRY,
                summary=summary,
            )
        except ActivityError as err:
            self._gone(err)
            return
        if not recorded.pushed:
            await sla_notify.push(self.host.ticket, push, entry.event_key, clock)

    def _gone(self, err: Exception) -> None:
        if local_first.failure_type(err) == Failure.TICKET_GONE:
            self.host.ticket.gone = True
            return
        raise err

    # --- lifecycle ------------------------------------------------------------------------

    def _timeout(self) -> timedelta | None:
        """How long the main loop may sleep before the next SLA event (None: no timer)."""
        s = self.host.ticket.sla
        if s is None or self.host.ticket.gone:
            return None
        nxt = clocks.next_due(s)
        if nxt is None:
            return None
        return max(nxt - workflow.now(), _MIN_TIMER)

    def _timer_summary(self) -> str:
        s = self.host.ticket.sla
        events = clocks.pending_events(s) if s else []
        if not events:
            return "SLA"
        e = events[0]
        if e.kind == "auto_close":
            return "Auto-close after quiet period"
        if e.kind == "breach" and e.clock:
            return f"SLA {e.clock.value} deadline"
        if e.step is not None:
            return f"SLA {e.step.clock.value} {e.step.threshold_percent}% (level {e.step.level})"
        return "SLA"

    async def wait(self, condition: Any) -> None:
        """The main loop's sleep: until `condition` or the next SLA event is due.

        The timer outlives one wait: a change that leaves the next due instant where it was
        (a comment, an edit, most status changes before a breach) keeps the running timer
        instead of cancelling it and starting an equal one (two history events saved per
        change)."""
        s = self.host.ticket.sla
        nxt = clocks.next_due(s) if s is not None and not self.host.ticket.gone else None
        if nxt is not None and nxt <= workflow.now():
            return  # already due. (Anything later needs a real timer: workflow time does
            # not advance within one activation, so returning early would spin forever.)
        timer = self._timer
        if timer is not None and (timer.done() or nxt != self._timer_due):
            if not timer.done():
                timer.cancel()
            timer = self._timer = None
        if timer is None and nxt is not None:
            delay = max(nxt - workflow.now(), _MIN_TIMER)
            timer = self._timer = asyncio.create_task(
                workflow.sleep(delay, summary=ui_text(self._timer_summary()))
            )
            self._timer_due = nxt
        await workflow.wait_condition(lambda: condition() or (timer is not None and timer.done()))

    async def fire_due(self) -> None:
        """Handle every SLA event due now, earliest first, each exactly once."""
        s = self.host.ticket.sla
        if s is None or self.host.ticket.gone:
            return
        async with self.host.lock:
            if self.host.outbox:
                return  # accepted changes first: a reply just in time cancels the breach
            for event in clocks.due_events(s, workflow.now()):
                if self.host.ticket.gone or self.host.ticket.status is Status.CLOSED:
                    return
                await self._handle(event)
                clocks.mark_fired(s, event)

    async def _handle(self, event: SlaEvent) -> None:
        now = workflow.now()
        lateness = round((now - event.due_at).total_seconds(), 3)
        if event.kind == "auto_close":
            await self._auto_close(event)
            return
        clock = sla_notify.clock_name(event.clock)
        if event.kind == "breach":
            s = self.host.ticket.sla
            assert s is not None and event.clock is not None
            s.clocks[event.clock].breached_at = event.due_at  # due dates show the breach
            entry = SlaHistoryEntry(
                event_key=event.key,
                action="sla.breached",
                at=now,
                changes={
                    "clock": clock,
                    "due_at": event.due_at.isoformat(),
                    "lateness_seconds": lateness,
                },
            )
            # One activity records and pushes: half the activity and workflow tasks per
            # breach, which is what many breaches at once queue behind.
            await self._write_then_push(
                entry,
                breached_at=event.due_at,
                push=PushEvent.SLA_BREACH,
                clock=clock,
                summary=f"SLA {clock} breached",
            )
            return
        step = event.step
        assert step is not None
        plan = escalation.plan_escalation(step, self.host.ticket.priority)
        await self._write(
            [],
            extra=[
                SlaHistoryEntry(
                    event_key=event.key,
                    action="sla.threshold",
                    at=now,
                    changes={
                        "clock": clock,
                        "threshold_percent": step.threshold_percent,
                        "level": step.level,
                        "actions": [a.value for a in step.actions],
                        "due_at": event.due_at.isoformat(),
                        "lateness_seconds": lateness,
                    },
                )
            ],
            summary=f"SLA {clock} {step.threshold_percent}%",
        )
        if plan.escalate:
            await self._escalate(event.key, plan, reason=f"sla_{clock}_{step.threshold_percent}")
        elif plan.notify:
            kind = (
                NotificationKind.SLA_BREACH
                if step.threshold_percent >= 100
                else NotificationKind.SLA_WARNING
            )
            await sla_notify.announce(
                self.host.ticket,
                self._timeout_s(),
                kind,
                event.key,
                plan.notify,
                None,
                clock,
                PushEvent.SLA_WARNING if step.threshold_percent < 100 else PushEvent.SLA_BREACH,
            )
        if plan.new_priority is not None:
            await self._apply(
                f"{event.key}:priority",
                "edited",
                FieldUpdates(fields=["priority"], priority=plan.new_priority),
                {
                    "priority": {"old": self.host.ticket.priority, "new": plan.new_priority},
                    "reason": "sla_raise_priority",
                },
                summary=f"Raise priority to {plan.new_priority}",
                apply=lambda _: setattr(self.host.ticket, "priority", plan.new_priority),
            )
        if plan.reassign:
            target = uuid.UUID(step.target_user_id) if step.target_user_id else None
            old = self.host.ticket.assignee_id
            await self._apply(
                f"{event.key}:reassign",
                "assigned",
                FieldUpdates(fields=["assignee_id"], assignee_id=target),
                {
                    "assignee_id": {
                        "old": str(old) if old else None,
                        "new": str(target) if target else None,
                    },
                    "reason": "sla_reassign",
                },
                summary="Re-assign (SLA)",
                auto_assign=target is None,
                apply=lambda result: setattr(self.host.ticket, "assignee_id", result.assignee_id),
            )

    async def _apply(
        self,
        key: str,
        action: str,
        updates: FieldUpdates,
        changes: dict[str, Any],
        *,
        summary: str,
        auto_assign: bool = False,
        apply: Callable[[PersistResult], None] | None = None,
    ) -> PersistResult | None:
        """Persist an automatic change through the ticket's one write path (row, history,
        audit), then accept it like any command (search attributes, outbox)."""
        if key in self.host.ticket.seen_request_ids:
            return None
        try:
            result = await self.host.persist(
                key,
                Actor.system(),
                action,
                updates,
                changes,
                summary=summary,
                auto_assign=auto_assign,
            )
        except ApplicationError as err:
            if err.type == Failure.TICKET_GONE or self.host.ticket.gone:
                self.host.ticket.gone = True
                return None
            # e.g. no agent to re-assign to: the step is recorded, the action skipped.
            workflow.logger.warning("SLA action %s skipped: %s", action, err.type)
            return None
        if apply is not None:
            apply(result)  # the state first, so search attributes and details are current
        self.host.accepted(key, action, changes)
        return result

    async def _escalate(self, key: str, plan: EscalationPlan, *, reason: str) -> None:
        """Escalate like `POST /tickets/{id}/escalate` does: the `escalated` change."""
        level = max(self.host.ticket.escalation_level, plan.level)
        target = uuid.UUID(plan.escalated_to) if plan.escalated_to else None
        changes: dict[str, Any] = {
            "escalated": {"old": self.host.ticket.escalated, "new": True},
            "escalation_level": {"old": self.host.ticket.escalation_level, "new": level},
            "escalated_to": str(target) if target else None,
            "reason": reason,
            "notify": list(plan.notify),
        }

        def escalated(result: PersistResult) -> None:
            self.host.ticket.escalated = True
            self.host.ticket.escalation_level = level
            # The rule named nobody: the activity picked a manager, who hears of it too.
            if result.escalated_to is not None and target is None:
                changes["escalated_to"] = str(result.escalated_to)
                if "escalated_to" not in changes["notify"]:
                    changes["notify"].append("escalated_to")

        await self._apply(
            f"{key}:escalate",
            "escalated",
            FieldUpdates(
                fields=["escalated", "escalation_level", "escalated_to"],
                escalated=True,
                escalation_level=level,
                escalated_to=target,
            ),
            changes,
            summary=f"Escalate to level {level} (SLA)",
            apply=escalated,
        )

    async def _auto_close(self, event: SlaEvent) -> None:
        if self.host.ticket.status is not Status.RESOLVED:
            return
        await self._apply(
            f"{event.key}:{int(event.due_at.timestamp() * 1000)}",
            "status_changed",
            FieldUpdates(fields=["status"], status=Status.CLOSED),
            {
                "status": {"old": Status.RESOLVED.value, "new": Status.CLOSED.value},
                "reason": "auto_close",
            },
            summary="Auto-close after quiet period",
            apply=lambda _: setattr(self.host.ticket, "status", Status.CLOSED),
        )

    # --- reactions to accepted changes ------------------------------------------------------

    async def after_change(self, event: ChangeEvent) -> None:
        s = self.host.ticket.sla
        if s is None or self.host.ticket.gone:
            return
        now = workflow.now()
        if is_public_staff_reply(event):
            records = clocks.fulfil_first_response(s, now)
            if records:
                await self._write(records, summary="First response given")
        elif event.action == "status_changed":
            new = Status(event.changes.get("status", {}).get("new", self.host.ticket.status.value))
            old = event.changes.get("status", {}).get("old")
            if new is Status.RESOLVED:
                await self._write(clocks.pause(s, now), summary="Pause SLA (resolved)")
            elif new is Status.CLOSED:
                await self._write(clocks.stop(s, now), summary="Stop SLA (closed)")
            elif old == Status.RESOLVED.value:
                await self._write(clocks.resume(s, now), summary="Resume SLA (reopened)")
        elif event.action == "edited" and "priority" in event.changes:
            change = event.changes["priority"]
            if change.get("old") != change.get("new"):
                policy = await self._load(self.host.ticket.priority)
                records = clocks.change_policy(s, policy, now)
                await self._write(records, summary=f"Recompute SLA for {policy.priority}")
        elif event.action == "escalated":
            notify = event.changes.get("notify") or ["managers", "escalated_to"]
            await sla_notify.announce(
                self.host.ticket,
                self._timeout_s(),
                NotificationKind.ESCALATED,
                event.request_id,
                notify,
                self._escalated_to(event),
                None,
                PushEvent.TICKET_ESCALATED,
            )

    def _escalated_to(self, event: ChangeEvent) -> uuid.UUID | None:
        value = event.changes.get("escalated_to")
        if isinstance(value, dict):
            value = value.get("new")
        return uuid.UUID(str(value)) if value else None
