"""TicketWorkflow: one durable workflow per ticket (`ticket-<uuid>`) owning its lifecycle.

Every change arrives as an Update with a validator (refused changes never enter history),
carries a request id the workflow deduplicates, and is persisted by ONE idempotent
activity (ticket row + history entry + audit row in one transaction) before the handler
returns the new state. Decisions live in pure modules (`helpdesk.rules.transitions`); this class
only orchestrates. Handlers are serialised by a lock so a change is judged against the
state the previous change left.

The SLA clocks (`workflows.ticket_sla.SlaClocks`) and comments
(`workflows.ticket_comments.Comments`) are parts composed into this class; they reach it only
through the members `workflows.ticket_host.TicketHost` names (`ticket`, `config`, `lock`,
`outbox`, `seen`, `answer`, `persist`, `accepted`). The main loop runs `_after_change` for
each accepted change in the `outbox` (SLA reactions, then notifications).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from helpdesk.rules.activity_contracts import ActivityName
    from helpdesk.rules.contracts import (
        TICKET_STATE_QUERY,
        TICKET_WORKFLOW,
        AssignRequest,
        ChangeEvent,
        CommentAdded,
        EditRequest,
        EscalateRequest,
        Failure,
        FieldUpdates,
        OpenRequest,
        PersistChange,
        PersistResult,
        StatusChange,
        TicketCommand,
        TicketCreated,
        TicketInput,
        TicketState,
    )
    from helpdesk.rules.notify import CREATED, NOTIFIED_BY_SLA, NotifyBatch, notifications_for
    from helpdesk.rules.transitions import Status
    from helpdesk.temporal import (
        ASSIGNED_AGENT,
        ESCALATED,
        TICKET_PRIORITY,
        TICKET_STATUS,
        ui_text,
    )

from workflows import local_first
from workflows.ticket_checks import (
    check_assign,
    check_edit,
    check_escalate,
    check_status,
    refuse,
)
from workflows.ticket_comments import ADD_COMMENT, Comments  # comments and internal notes
from workflows.ticket_notify import send_all  # email and push per change
from workflows.ticket_sla import SlaClocks  # SLA clocks, escalation, auto-close

# Error types the API maps to HTTP statuses (api/routes/tickets.py).
NON_RETRYABLE = [
    Failure.TICKET_GONE,
    Failure.NO_AGENT_AVAILABLE,
    Failure.AGENT_NOT_ASSIGNABLE,
    Failure.VALIDATION_FAILED,
]


@workflow.defn(name=TICKET_WORKFLOW)
class TicketWorkflow:
    @workflow.init
    def __init__(self, inp: TicketInput) -> None:
        # The input was decoded for this run alone: owning it needs no (costly) deep copy.
        self.ticket: TicketState = inp.state
        self.config = inp.config
        self.lock = asyncio.Lock()
        self.outbox: list[ChangeEvent] = []
        # The search attributes as last set: at start (by the API, or carried over by
        # continue-as-new) they match the state.
        self._upserted = self._search_values()
        # Per request id, the notifications the persist activity chose and did not send.
        self._chosen: dict[str, NotifyBatch] = {}
        # A workflow started to create its ticket answers `opened` once the row is written
        # (or refused: `_refusal`).
        self._opened = inp.new is None
        self._refusal: ApplicationError | None = None
        # The composed parts: each reaches the ticket only through this workflow's members
        # that `workflows.ticket_host.TicketHost` names.
        self._sla = SlaClocks(self)
        self._comments = Comments(self)

    # --- main loop -------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: TicketInput) -> TicketState:
        created = inp.new is not None
        if created:
            await self._create(inp)
        self._describe()
        if created and not self.ticket.gone:
            self.outbox.append(ChangeEvent(action=CREATED, request_id=CREATED))
        while True:
            # Sleeps until a change, or until the next SLA event is due (a durable timer).
            await self._sla.wait(
                lambda: bool(self.outbox) or self._finished() or self._continue_as_new_due()
            )
            while self.outbox:
                await self._after_change(self.outbox.pop(0))
            await self._sla.fire_due()
            if self._finished():
                await workflow.wait_condition(workflow.all_handlers_finished)
                # A change accepted while we waited still has its effects.
                while self.outbox:
                    await self._after_change(self.outbox.pop(0))
                return self.answer()
            if self._continue_as_new_due():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self.outbox:  # a handler finished meanwhile: drain first
                    continue
                workflow.continue_as_new(TicketInput(state=self.ticket, config=self.config))

    async def _create(self, inp: TicketInput) -> None:
        """The ticket's first step: write its row (the one writer of ticket rows is this
        workflow's activities), then answer `opened`. A refusal no retry can fix (a
        category retired meanwhile) ends the workflow and is the `opened` answer. The sealed
        ticket is let go once written: a cached workflow would otherwise hold its text (sealed)
        and tokens for the ticket's whole life."""
        new, inp.new = inp.new, None
        assert new is not None
        try:
            created = await local_first.run(
                ActivityName.CREATE_TICKET,
                new,
                result_type=TicketCreated,
                start_to_close=timedelta(seconds=self.config.activity_timeout_seconds),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(seconds=10), non_retryable_error_types=NON_RETRYABLE
                ),
                summary="Create the ticket",
                final=frozenset(NON_RETRYABLE),
            )
        except FailureError as err:
            cause = err.cause if isinstance(err, ActivityError) else err
            if not isinstance(cause, ApplicationError):
                raise
            self._refusal = ApplicationError(
                cause.message, *cause.details, type=cause.type, non_retryable=True
            )
            self.ticket.gone = True
        else:
            s = self.ticket
            s.assignee_id, s.due_date = created.assignee_id, created.due_date
            s.sla, s.version = created.sla, created.version
            self._sync_search_attributes()
            if created.notified:  # the create activity sent the creation's notifications
                self._chosen[CREATED] = NotifyBatch()
        self._opened = True

    async def _after_change(self, event: ChangeEvent) -> None:
        """Side effects of an accepted change, run outside the handler (SLA timers,
        notifications). The base workflow has none; features extend here."""
        await self._sla.after_change(event)
        chosen = self._chosen.pop(event.request_id, None)
        if chosen is not None:  # a persisted change: its activity chose them
            await send_all([*chosen.emails, *chosen.pushes])
        else:  # a comment, or a creation its activity could not notify: chosen here
            await send_all(notifications_for(event, self.ticket, skip=NOTIFIED_BY_SLA))

    def _finished(self) -> bool:
        return self.ticket.status is Status.CLOSED or self.ticket.gone

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        limit = self.config.continue_as_new_after_events
        if limit is not None and info.get_current_history_length() >= limit:
            return True
        return info.is_continue_as_new_suggested()

    # --- query -----------------------------------------------------------------------

    @workflow.query(name=TICKET_STATE_QUERY, description="The ticket's live state (no PHI)")
    def state(self) -> TicketState:
        return self.ticket

    # --- updates ---------------------------------------------------------------------

    @workflow.update(
        name=TicketCommand.OPENED.value,
        description="Answer once the ticket's workflow runs (sent with its start)",
    )
    async def opened(self, req: OpenRequest) -> TicketState:
        del req
        await workflow.wait_condition(lambda: self._opened)
        if self._refusal is not None:
            raise self._refusal
        return self.answer()

    @opened.validator
    def _validate_opened(self, req: OpenRequest) -> None:
        """Nothing to judge; a validator lets the command guard refuse a forged `opened`
        before it is accepted (workers.command_guard)."""
        del req

    @workflow.update(
        name=TicketCommand.CHANGE_STATUS.value,
        description="Move the ticket to another status",
    )
    async def change_status(self, req: StatusChange) -> TicketState:
        async with self.lock:
            if self.seen(req.request_id):
                return self.answer()
            check_status(self.ticket, req)
            old = self.ticket.status
            await self.persist(
                req.request_id,
                req.actor,
                "status_changed",
                FieldUpdates(fields=["status"], status=req.status),
                {"status": {"old": old.value, "new": req.status.value}},
                note=req.note,
                summary=f"Status {old.value} → {req.status.value}",
            )
            self.ticket.status = req.status
            self.accepted(
                req.request_id,
                "status_changed",
                {"status": {"old": old.value, "new": req.status.value}},
            )
            return self.answer()

    @change_status.validator
    def _validate_status(self, req: StatusChange) -> None:
        if not self.seen(req.request_id):
            check_status(self.ticket, req)

    @workflow.update(
        name=TicketCommand.ASSIGN.value,
        description="Assign the ticket to an agent, or to the least-loaded one",
    )
    async def assign(self, req: AssignRequest) -> TicketState:
        async with self.lock:
            if self.seen(req.request_id):
                return self.answer()
            check_assign(self.ticket, req)
            old = self.ticket.assignee_id
            if not req.auto and req.agent_id == old:
                self._remember(req.request_id)
                return self.answer()
            updates = FieldUpdates(fields=["assignee_id"], assignee_id=req.agent_id)
            changes = {"assignee_id": {"old": _s(old), "new": _s(req.agent_id)}}
            result = await self.persist(
                req.request_id,
                req.actor,
                "assigned",
                updates,
                changes,
                auto_assign=req.auto,
                summary="Auto-assign to the least-loaded agent" if req.auto else "Assign agent",
            )
            self.ticket.assignee_id = result.assignee_id
            self.accepted(
                req.request_id,
                "assigned",
                {"assignee_id": {"old": _s(old), "new": _s(result.assignee_id)}},
            )
            return self.answer()

    @assign.validator
    def _validate_assign(self, req: AssignRequest) -> None:
        if not self.seen(req.request_id):
            check_assign(self.ticket, req)

    @workflow.update(
        name=TicketCommand.EDIT.value,
        description="Edit title, description, priority, category, tags, due date",
    )
    async def edit(self, req: EditRequest) -> TicketState:
        async with self.lock:
            if self.seen(req.request_id):
                return self.answer()
            check_edit(self.ticket, req)
            e = req.edits
            updates = FieldUpdates(fields=list(e.fields))
            changes: dict[str, Any] = {}
            for name in e.fields:
                value = getattr(e, name)
                setattr(updates, name, value)
                if name in ("title", "description"):
                    changes[name] = {"changed": True}  # PHI: record only that it changed
                elif name in ("priority", "category_id", "due_date"):
                    changes[name] = {"old": _s(getattr(self.ticket, name)), "new": _s(value)}
                # tags: the activity records old → new from the row.
            await self.persist(
                req.request_id,
                req.actor,
                "edited",
                updates,
                changes,
                summary="Edit " + ", ".join(sorted(e.fields)),
            )
            for name in ("priority", "category_id", "due_date"):
                if name in e.fields:
                    setattr(self.ticket, name, getattr(e, name))
            self.accepted(req.request_id, "edited", changes)
            return self.answer()

    @edit.validator
    def _validate_edit(self, req: EditRequest) -> None:
        if not self.seen(req.request_id):
            check_edit(self.ticket, req)

    @workflow.update(
        name=TicketCommand.ESCALATE.value,
        description="Escalate the ticket one level",
    )
    async def escalate(self, req: EscalateRequest) -> TicketState:
        async with self.lock:
            if self.seen(req.request_id):
                return self.answer()
            check_escalate(self.ticket, req)
            level = self.ticket.escalation_level + 1
            changes = {
                "escalated": {"old": self.ticket.escalated, "new": True},
                "escalation_level": {"old": self.ticket.escalation_level, "new": level},
                "reason": req.reason or "manual",
                "escalated_to": _s(req.escalated_to),  # who the SLA part notifies
            }
            result = await self.persist(
                req.request_id,
                req.actor,
                "escalated",
                FieldUpdates(
                    fields=["escalated", "escalation_level", "escalated_to"],
                    escalated=True,
                    escalation_level=level,
                    escalated_to=req.escalated_to,
                ),
                changes,
                summary=f"Escalate to level {level}",
            )
            # Named nobody: the activity picked the manager it went to (notified, pushed).
            changes["escalated_to"] = _s(result.escalated_to)
            self.ticket.escalated = True
            self.ticket.escalation_level = level
            self.accepted(req.request_id, "escalated", changes)
            return self.answer()

    @escalate.validator
    def _validate_escalate(self, req: EscalateRequest) -> None:
        if not self.seen(req.request_id):
            check_escalate(self.ticket, req)

    @workflow.update(
        name=ADD_COMMENT,
        description="Put a comment on the ticket's timeline (its text stays in the database)",
    )
    async def add_comment(self, event: CommentAdded) -> TicketState:
        return await self._comments.add(event)

    @add_comment.validator
    def _validate_comment(self, event: CommentAdded) -> None:
        self._comments.validate(event)

    # --- plumbing --------------------------------------------------------------------

    def answer(self) -> TicketState:
        """The state an update (or the run) answers with: without the request ids seen,
        which only the workflow needs (each answer is stored in history; the `state` query
        and continue-as-new carry them)."""
        return self.ticket.model_copy(update={"seen_request_ids": []})

    def seen(self, request_id: str) -> bool:
        return request_id in self.ticket.seen_request_ids

    def _remember(self, request_id: str) -> None:
        seen = self.ticket.seen_request_ids
        seen.append(request_id)
        if len(seen) > self.config.dedupe_window:
            del seen[: len(seen) - self.config.dedupe_window]

    async def persist(
        self,
        request_id: str,
        actor: Any,
        action: str,
        updates: FieldUpdates,
        changes: dict[str, Any],
        *,
        summary: str,
        note: str | None = None,
        auto_assign: bool = False,
    ) -> PersistResult:
        change = PersistChange(
            ticket_id=self.ticket.ticket_id,
            event_key=request_id,
            actor=actor,
            action=action,
            updates=updates,
            changes=changes,
            note=note,
            auto_assign=auto_assign,
            version=self.ticket.version + 1,
        )
        try:
            result = await workflow.execute_activity(
                ActivityName.PERSIST_TICKET_CHANGE,
                change,
                result_type=PersistResult,
                start_to_close_timeout=timedelta(seconds=self.config.activity_timeout_seconds),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(seconds=10), non_retryable_error_types=NON_RETRYABLE
                ),
                summary=summary,
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type:
                if cause.type == Failure.TICKET_GONE:
                    self.ticket.gone = True
                raise ApplicationError(
                    cause.message, *cause.details, type=cause.type, non_retryable=True
                ) from None
            raise refuse("the change could not be saved", Failure.PERSIST_FAILED) from None
        self._chosen[request_id] = result.notifications
        return result

    def accepted(self, request_id: str, action: str, changes: dict[str, Any]) -> None:
        self.ticket.version += 1
        self._remember(request_id)
        self._sync_search_attributes()
        self._describe()
        self.outbox.append(ChangeEvent(action=action, request_id=request_id, changes=changes))

    def _sync_search_attributes(self) -> None:
        """Only when a value a manager filters by changed (a comment changes none): each
        upsert is an event in the ticket's history."""
        values = self._search_values()
        if values != self._upserted:
            self._upserted = values
            workflow.upsert_search_attributes(self._search_attributes())

    def _search_values(self) -> tuple[Any, ...]:
        s = self.ticket
        return (s.status, s.priority, s.escalated, s.assignee_id)

    def _search_attributes(self) -> list[SearchAttributeUpdate[Any]]:
        s = self.ticket
        return [
            TICKET_STATUS.value_set(s.status.value),
            TICKET_PRIORITY.value_set(s.priority),
            ESCALATED.value_set(s.escalated),
            ASSIGNED_AGENT.value_set(str(s.assignee_id))
            if s.assignee_id
            else ASSIGNED_AGENT.value_unset(),
        ]

    def _describe(self) -> None:
        s = self.ticket
        parts = [
            f"**{s.status.value}**",
            f"priority {s.priority}",
            "assigned" if s.assignee_id else "unassigned",
        ]
        if s.escalated:
            parts.append(f"escalated (level {s.escalation_level})")
        workflow.set_current_details(ui_text(" · ".join(parts)))


def _s(value: Any) -> Any:
    """A JSON-friendly rendering of an old/new value for history."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
