"""Escalation planning: what the workflow does for an escalation step or a manual
escalation (the level, to whom, a raised priority, a reassignment, who is notified). Pure."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from helpdesk.rules.sla_policy import PRIORITY_ORDER, EscalationAction, EscalationStep


def raised_priority(priority: str) -> str:
    """One step up (CRITICAL stays CRITICAL)."""
    index = PRIORITY_ORDER.index(priority)
    return PRIORITY_ORDER[min(index + 1, len(PRIORITY_ORDER) - 1)]


class EscalationPlan(BaseModel):
    """What the workflow does for one escalation step (or a manual escalation)."""

    level: int
    escalate: bool
    escalated_to: str | None
    new_priority: str | None
    reassign: bool
    notify: list[Literal["assignee", "managers", "escalated_to"]]


def plan_escalation(step: EscalationStep, priority: str) -> EscalationPlan:
    actions = set(step.actions)
    notify: list[Literal["assignee", "managers", "escalated_to"]] = []
    if EscalationAction.NOTIFY_ASSIGNEE in actions:
        notify.append("assignee")
    if EscalationAction.NOTIFY_MANAGERS in actions:
        notify.append("managers")
    escalate = EscalationAction.ESCALATE in actions
    if escalate and step.target_user_id:
        notify.append("escalated_to")
    raised = raised_priority(priority) if EscalationAction.RAISE_PRIORITY in actions else None
    return EscalationPlan(
        level=step.level,
        escalate=escalate,
        escalated_to=step.target_user_id if escalate else None,
        new_priority=raised if raised and raised != priority else None,
        reassign=EscalationAction.REASSIGN in actions,
        notify=notify,
    )


def plan_manual_escalation(level: int, target_user_id: str | None) -> EscalationPlan:
    """`POST /tickets/{id}/escalate`: the next level up, to a person or the managers."""
    return EscalationPlan(
        level=level,
        escalate=True,
        escalated_to=target_user_id,
        new_priority=None,
        reassign=False,
        notify=["managers", "escalated_to"] if target_user_id else ["managers"],
    )
