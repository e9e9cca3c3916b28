"""The ticket workflow's checks: whether a command may be applied to the ticket's state.
Pure (no I/O, no clock): the update validators and handlers share them, so a refused
command never enters history and a handler judges the state the previous change left.
Each refusal is a non-retryable ApplicationError whose type the API maps to a status
(`helpdesk.rules.contracts.Failure`)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from helpdesk.policy import STAFF_ONLY_FIELDS_MESSAGE, fields_refused_to
    from helpdesk.rules.contracts import (
        AssignRequest,
        ChangeEvent,
        EditRequest,
        EscalateRequest,
        Failure,
        StatusChange,
        TicketState,
    )
    from helpdesk.rules.transitions import STAFF, Status, TransitionVerdict, allowed_next, judge

PRIORITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
EDITABLE = frozenset({"title", "description", "priority", "category_id", "due_date", "tags"})


def refuse(message: str, type_: str, **details: Any) -> ApplicationError:
    return ApplicationError(message, details, type=type_, non_retryable=True)


def check_live(state: TicketState) -> None:
    if state.gone:
        raise refuse("the ticket was deleted", Failure.TICKET_GONE)
    if state.status is Status.CLOSED:
        raise refuse(
            "the ticket is closed",
            Failure.INVALID_TRANSITION,
            current=Status.CLOSED.value,
            allowed=[],
        )


def _is_requester(state: TicketState, actor_id: Any) -> bool:
    return actor_id is not None and actor_id == state.requester_id


def check_status(state: TicketState, req: StatusChange) -> None:
    check_live(state)
    is_requester = _is_requester(state, req.actor.id)
    verdict = judge(state.status, req.status, req.actor.role, is_requester=is_requester)
    if verdict is TransitionVerdict.ALLOWED:
        return
    allowed = [
        s.value for s in allowed_next(state.status, req.actor.role, is_requester=is_requester)
    ]
    details = {
        "current": state.status.value,
        "requested": req.status.value,
        "allowed": allowed,
    }
    if verdict is TransitionVerdict.NOT_PERMITTED:
        raise refuse("you may not make this status change", "TransitionNotPermitted", **details)
    raise refuse(
        f"a ticket cannot go from {state.status.value} to {req.status.value}",
        Failure.INVALID_TRANSITION,
        **details,
    )


def check_assign(state: TicketState, req: AssignRequest) -> None:
    check_live(state)
    role = req.actor.role
    if role not in STAFF:
        raise refuse("only staff assign tickets", Failure.PERMISSION_DENIED)
    if req.auto == (req.agent_id is not None):
        raise refuse("give either an agent id or auto", Failure.VALIDATION_FAILED)
    # Least privilege: an agent takes a ticket or asks for automatic assignment;
    # assigning someone else is for managers and administrators.
    if role == "SUPPORT_AGENT" and not req.auto and req.agent_id != req.actor.id:
        raise refuse("agents may assign tickets only to themselves", Failure.PERMISSION_DENIED)


def check_edit(state: TicketState, req: EditRequest) -> None:
    check_live(state)
    fields = set(req.edits.fields)
    if not fields:
        raise refuse("nothing to change", Failure.VALIDATION_FAILED)
    if not fields <= EDITABLE:
        raise refuse("unknown fields", Failure.VALIDATION_FAILED, fields=sorted(fields - EDITABLE))
    if req.actor.role not in STAFF:  # (STAFF includes the help desk's own SYSTEM actor)
        if not _is_requester(state, req.actor.id):
            raise refuse("you may not edit this ticket", Failure.PERMISSION_DENIED)
        # The one rule the API applies too (helpdesk.policy): same 403, same details.
        refused = fields_refused_to(req.actor.role, fields)
        if refused:
            raise refuse(STAFF_ONLY_FIELDS_MESSAGE, Failure.PERMISSION_DENIED, fields=refused)
    if "priority" in fields and req.edits.priority not in PRIORITIES:
        raise refuse("unknown priority", Failure.VALIDATION_FAILED)


def check_escalate(state: TicketState, req: EscalateRequest) -> None:
    check_live(state)
    if req.actor.role not in STAFF:
        raise refuse("only staff escalate tickets", Failure.PERMISSION_DENIED)


def is_public_staff_reply(event: ChangeEvent) -> bool:
    """A comment that fulfils first response: public, written by staff (not the system)."""
    if event.action not in ("commented", "comment_added"):
        return False
    changes = event.changes
    if "first_response" in changes:  # decided by workflows.ticket_comments.on_comment
        return changes["first_response"] is True
    role = changes.get("author_role") or changes.get("actor_role")
    return changes.get("internal") is False and role in STAFF and role != "SYSTEM"
