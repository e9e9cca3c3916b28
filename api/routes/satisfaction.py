"""Routes: a ticket's satisfaction survey (answer it; read the answers)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import BEARER, AnyUser, RuntimeDep, get_principal
from helpdesk import push
from helpdesk.services import satisfaction, ticket_reads

router = APIRouter()


class SatisfactionAnswer(BaseModel):
    """A rating of the resolution; `token` (from the survey email's link) instead of
    signing in as the ticket's requester. The comment is PHI (sealed at rest)."""

    model_config = ConfigDict(extra="forbid")

    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(None, max_length=2000)
    token: str | None = Field(None, min_length=20, max_length=100)


class SatisfactionView(BaseModel):
    ticket_id: uuid.UUID
    resolution: int
    sent_at: datetime | None
    expires_at: datetime
    answered_at: datetime | None
    rating: int | None
    comment: str | None


@router.post("/tickets/{ticket_id}/satisfaction", status_code=201, response_model=SatisfactionView)
async def answer_survey(
    ticket_id: uuid.UUID, body: SatisfactionAnswer, request: Request, runtime: RuntimeDep
) -> satisfaction.SurveyView:
    """Answer the ticket's open survey: once per resolution; 409 when none is open (not
    sent, withdrawn by a reopen, or answered), 410 once expired."""
    user = None
    if body.token is None:
        user = (await get_principal(request, runtime, await BEARER(request))).user
    view = await satisfaction.answer(
        runtime, ticket_id, rating=body.rating, comment=body.comment, user=user, token=body.token
    )
    await push.publisher_for(runtime).publish(
        push.PushEvent.SATISFACTION_ANSWERED.value,
        {"ticket_id": str(ticket_id), "rating": view.rating, "resolution": view.resolution},
        [push.ticket_staff_room(ticket_id)],
    )
    return view


@router.get("/tickets/{ticket_id}/satisfaction", response_model=list[SatisfactionView])
async def read_surveys(
    ticket_id: uuid.UUID, principal: AnyUser, runtime: RuntimeDep
) -> list[satisfaction.SurveyView]:
    """The ticket's surveys and their answers (staff, or the ticket's requester)."""
    async with runtime.database.transaction() as session:
        ticket = await ticket_reads.load_visible(session, principal.id, principal.role, ticket_id)
        return await satisfaction.surveys_of(session, runtime, ticket)
