"""SLA administration (policies, business calendars, escalation rules) and manual escalation.

Administrators write (TOTP session, IP allowlist); managers and administrators read.
`POST /tickets/{id}/escalate` is for staff and goes through the ticket's workflow, the same
escalation path the SLA timers take.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Admin, ManagerOrAdmin, RuntimeDep, SessionDep, Staff
from api.schemas.sla import (
    CalendarIn,
    CalendarOut,
    EscalateIn,
    EscalateOut,
    PolicyIn,
    PolicyOut,
    RuleIn,
    RuleOut,
)
from helpdesk import errors
from helpdesk.rules.sla_policy import SlaClockKind
from helpdesk.runtime import Runtime
from helpdesk.services import assignment, ticket_commands, tickets
from helpdesk.services import sla as sla_service
from models.enums import Priority
from models.sla import BusinessCalendar, EscalationRule

router = APIRouter()

_Responses = dict[int | str, dict[str, Any]]
_ERRORS: _Responses = {
    401: {"description": "Not signed in"},
    403: {"description": "Role, MFA session or IP allowlist refused"},
}
_NOT_FOUND: _Responses = {404: {"description": "No such object"}}
_CONFLICT: _Responses = {409: {"description": "Duplicate, or still in use"}}
_INVALID: _Responses = {422: {"description": "Invalid input"}}


# --- SLA policies -----------------------------------------------------------------------


@router.get(
    "/sla-policies",
    response_model=list[PolicyOut],
    responses=_ERRORS,
    summary="List SLA policies (one per priority)",
)
async def list_policies(session: SessionDep, _: ManagerOrAdmin) -> list[PolicyOut]:
    return [PolicyOut.model_validate(r) for r in await sla_service.list_policies(session)]


@router.get(
    "/sla-policies/{policy_id}",
    response_model=PolicyOut,
    responses=_ERRORS | _NOT_FOUND,
    summary="One SLA policy",
)
async def get_policy(policy_id: uuid.UUID, session: SessionDep, _: ManagerOrAdmin) -> PolicyOut:
    return PolicyOut.model_validate(await sla_service.get_policy(session, policy_id))


@router.post(
    "/sla-policies",
    response_model=PolicyOut,
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS | _CONFLICT | _INVALID,
    summary="Create the SLA policy of a priority",
)
async def create_policy(
    body: PolicyIn, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> PolicyOut:
    row = await sla_service.save_policy(session, runtime, policy_id=None, **body.model_dump())
    return PolicyOut.model_validate(row)


@router.put(
    "/sla-policies/{policy_id}",
    response_model=PolicyOut,
    responses=_ERRORS | _NOT_FOUND | _CONFLICT | _INVALID,
    summary="Replace an SLA policy (running tickets keep their snapshot)",
)
async def update_policy(
    policy_id: uuid.UUID, body: PolicyIn, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> PolicyOut:
    row = await sla_service.save_policy(session, runtime, policy_id=policy_id, **body.model_dump())
    return PolicyOut.model_validate(row)


@router.delete(
    "/sla-policies/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_ERRORS | _NOT_FOUND,
    summary="Delete an SLA policy (the priority falls back to the built-in targets)",
)
async def delete_policy(
    policy_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> Response:
    await sla_service.delete_policy(session, runtime, policy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- escalation rules -------------------------------------------------------------------


@router.get(
    "/escalation-rules",
    response_model=list[RuleOut],
    responses=_ERRORS,
    summary="List escalation rules",
)
async def list_rules(
    session: SessionDep,
    _: ManagerOrAdmin,
    priority: Priority | None = Query(None),
    clock: SlaClockKind | None = Query(None),
) -> list[RuleOut]:
    rows = await sla_service.list_rules(
        session, priority=priority, clock=clock.value if clock else None
    )
    return [RuleOut.model_validate(r) for r in rows]


@router.get(
    "/escalation-rules/{rule_id}",
    response_model=RuleOut,
    responses=_ERRORS | _NOT_FOUND,
    summary="One escalation rule",
)
async def get_rule(rule_id: uuid.UUID, session: SessionDep, _: ManagerOrAdmin) -> RuleOut:
    return RuleOut.model_validate(await sla_service.get_rule(session, rule_id))


@router.post(
    "/escalation-rules",
    response_model=RuleOut,
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS | _CONFLICT | _INVALID,
    summary="Create an escalation rule",
)
async def create_rule(body: RuleIn, session: SessionDep, runtime: RuntimeDep, _: Admin) -> RuleOut:
    row = await _save_rule(session, runtime, None, body)
    return RuleOut.model_validate(row)


@router.put(
    "/escalation-rules/{rule_id}",
    response_model=RuleOut,
    responses=_ERRORS | _NOT_FOUND | _CONFLICT | _INVALID,
    summary="Replace an escalation rule",
)
async def update_rule(
    rule_id: uuid.UUID, body: RuleIn, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> RuleOut:
    row = await _save_rule(session, runtime, rule_id, body)
    return RuleOut.model_validate(row)


@router.delete(
    "/escalation-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_ERRORS | _NOT_FOUND,
    summary="Delete an escalation rule",
)
async def delete_rule(
    rule_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> Response:
    await sla_service.delete_rule(session, runtime, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _save_rule(
    session: AsyncSession, runtime: Runtime, rule_id: uuid.UUID | None, body: RuleIn
) -> EscalationRule:
    return await sla_service.save_rule(
        session,
        runtime,
        rule_id=rule_id,
        priority=body.priority,
        clock=body.clock.value,
        threshold_percent=body.threshold_percent,
        actions=body.actions,
        level=body.level,
        target_user_id=body.target_user_id,
        enabled=body.enabled,
    )


# --- business calendars -----------------------------------------------------------------


@router.get(
    "/business-calendars",
    response_model=list[CalendarOut],
    responses=_ERRORS,
    summary="List business-hours calendars",
)
async def list_calendars(session: SessionDep, _: ManagerOrAdmin) -> list[CalendarOut]:
    return [CalendarOut.model_validate(r) for r in await sla_service.list_calendars(session)]


@router.get(
    "/business-calendars/{calendar_id}",
    response_model=CalendarOut,
    responses=_ERRORS | _NOT_FOUND,
    summary="One business-hours calendar",
)
async def get_calendar(
    calendar_id: uuid.UUID, session: SessionDep, _: ManagerOrAdmin
) -> CalendarOut:
    return CalendarOut.model_validate(await sla_service.get_calendar(session, calendar_id))


@router.post(
    "/business-calendars",
    response_model=CalendarOut,
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS | _CONFLICT | _INVALID,
    summary="Create a business-hours calendar",
)
async def create_calendar(
    body: CalendarIn, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> CalendarOut:
    row = await _save_calendar(session, runtime, None, body)
    return CalendarOut.model_validate(row)


@router.put(
    "/business-calendars/{calendar_id}",
    response_model=CalendarOut,
    responses=_ERRORS | _NOT_FOUND | _CONFLICT | _INVALID,
    summary="Replace a business-hours calendar",
)
async def update_calendar(
    calendar_id: uuid.UUID, body: CalendarIn, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> CalendarOut:
    row = await _save_calendar(session, runtime, calendar_id, body)
    return CalendarOut.model_validate(row)


@router.delete(
    "/business-calendars/{calendar_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_ERRORS | _NOT_FOUND | _CONFLICT,
    summary="Delete a business-hours calendar no policy uses",
)
async def delete_calendar(
    calendar_id: uuid.UUID, session: SessionDep, runtime: RuntimeDep, _: Admin
) -> Response:
    await sla_service.delete_calendar(session, runtime, calendar_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _save_calendar(
    session: AsyncSession, runtime: Runtime, calendar_id: uuid.UUID | None, body: CalendarIn
) -> BusinessCalendar:
    return await sla_service.save_calendar(
        session,
        runtime,
        calendar_id=calendar_id,
        name=body.name,
        time_zone=body.time_zone,
        weekly_hours={
            day: [list(pair) for pair in spans] for day, spans in body.weekly_hours.items()
        },
        holidays=body.holidays,
    )


# --- manual escalation ------------------------------------------------------------------


@router.post(
    "/tickets/{ticket_id}/escalate",
    response_model=EscalateOut,
    tags=["tickets"],
    responses=_ERRORS
    | _NOT_FOUND
    | _CONFLICT
    | _INVALID
    | {503: {"description": "The ticket's workflow cannot answer now"}},
    summary="Escalate a ticket one level (to a person or the managers)",
)
async def escalate(
    ticket_id: uuid.UUID,
    runtime: RuntimeDep,
    principal: Staff,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="A retry with the same key escalates once",
        ),
    ] = None,
    body: Annotated[EscalateIn | None, Body()] = None,
) -> EscalateOut:
    body = body or EscalateIn()
    # No request-wide session: a transaction held open while the workflow's activity
    # writes would wait on SQLite's write lock.
    if body.escalated_to is not None:
        async with runtime.database.transaction() as session:
            if not await assignment.is_assignable(session, body.escalated_to):
                raise errors.ValidationFailed(
                    "escalate to an active staff member", details={"field": "escalated_to"}
                )
    view = await ticket_commands.escalate(
        runtime,
        principal.id,
        principal.role.value,
        ticket_id,
        escalated_to=body.escalated_to,
        request_id=tickets.command_request_id(principal.id, idempotency_key),
        # No reason given: history records the escalation as "manual".
        reason=body.reason.value if body.reason is not None else "manual",
    )
    t = view.ticket
    return EscalateOut(
        ticket_id=t.id,
        escalated=t.escalated,
        escalation_level=t.escalation_level,
        escalated_at=t.escalated_at,
        escalated_to=t.escalated_to,
    )
