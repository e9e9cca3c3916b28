"""Customer satisfaction: a survey per resolution, its PHI-free email, the answer.

- When a ticket becomes RESOLVED, the transaction that persists the change creates a survey
  (`on_status_change`): due `csat_survey_delay_seconds` later, answerable for
  `csat_survey_life_hours` after that. A reopen cancels an unanswered survey.
- `send_due` emails due surveys, each once (a NotificationLog claim): the persist activity
  calls it right after its commit, the worker's reconcile loop for delayed ones. The link
  token is an HMAC of the survey id under a key derived from the blind-index key, so it is
  never stored (only its SHA-256) and never enters a workflow's history.
- `answer` takes a rating 1-5 and an optional comment (PHI: sealed under the ticket's data
  key) from the requester (signed in) or from whoever holds the link's token; one answer
  per survey. The ticket's analytics fact takes it in the same transaction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import errors
from helpdesk.analytics import facts as analytics_facts
from helpdesk.crypto import decrypt_field, encrypt_field
from helpdesk.email import EmailMessage, EmailPermanentError, EmailTransientError
from helpdesk.notifications import PRODUCT, portal_url
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_tags, users
from models.base import utcnow
from models.enums import TicketStatus
from models.satisfaction import SatisfactionSurvey
from models.ticket import NotificationLog, Ticket
from models.user import User

log = logging.getLogger("helpdesk.satisfaction")
TABLE = "satisfaction_surveys"
_DONE = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)


def _token_key(runtime: Runtime) -> bytes:
    base = runtime.settings.secret_bytes("blind_index_key")
    return hmac.new(base, b"satisfaction-survey-token", hashlib.sha256).digest()


def token_for(runtime: Runtime, survey_id: uuid.UUID) -> str:
    digest = hmac.new(_token_key(runtime), survey_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def on_status_change(
    session: AsyncSession, runtime: Runtime, ticket: Ticket, old_status: str, now: datetime
) -> bool:
    """Create or cancel surveys for a status change (in the persisting transaction).
    True when the ticket's surveys changed."""
    if ticket.status == TicketStatus.RESOLVED.value and old_status not in _DONE:
        count = await session.scalar(
            select(func.count()).where(SatisfactionSurvey.ticket_id == ticket.id)
        )
        survey_id = uuid.uuid4()
        send_after = now + timedelta(seconds=runtime.settings.csat_survey_delay_seconds)
        session.add(
            SatisfactionSurvey(
                id=survey_id,
                ticket_id=ticket.id,
                resolution=int(count or 0) + 1,
                token_hash=token_hash(token_for(runtime, survey_id)),
                created_at=now,
                send_after=send_after,
                expires_at=send_after + timedelta(hours=runtime.settings.csat_survey_life_hours),
            )
        )
        return True
    if old_status in _DONE and ticket.status not in _DONE:
        found = await session.scalars(
            select(SatisfactionSurvey).where(
                SatisfactionSurvey.ticket_id == ticket.id,
                SatisfactionSurvey.answered_at.is_(None),
                SatisfactionSurvey.cancelled_at.is_(None),
            )
        )
        changed = False
        for survey in found:
            survey.cancelled_at = now
            changed = True
        return changed
    return False


async def send_due(
    runtime: Runtime, *, ticket_id: uuid.UUID | None = None, now: datetime | None = None
) -> int:
    """Email every due, unsent, live survey (of one ticket, or all); returns how many."""
    now = now or utcnow()
    query = select(SatisfactionSurvey.id).where(
        SatisfactionSurvey.sent_at.is_(None),
        SatisfactionSurvey.cancelled_at.is_(None),
        SatisfactionSurvey.send_after <= now,
        SatisfactionSurvey.expires_at > now,
    )
    if ticket_id is not None:
        query = query.where(SatisfactionSurvey.ticket_id == ticket_id)
    async with runtime.database.read() as session:
        due = list(await session.scalars(query.limit(500)))
    sent = 0
    for survey_id in due:
        if await _send_one(runtime, survey_id, now):
            sent += 1
    return sent


async def _send_one(runtime: Runtime, survey_id: uuid.UUID, now: datetime) -> bool:
    key = f"email:csat:{survey_id}"
    async with runtime.database.transaction() as session:
        survey = await session.get(SatisfactionSurvey, survey_id)
        if survey is None or survey.sent_at is not None or survey.cancelled_at is not None:
            return False
        if await session.get(NotificationLog, key) is not None:
            return False
        ticket = await session.get(Ticket, survey.ticket_id)
        user = await session.get(User, ticket.requester_id) if ticket else None
        if ticket is None or ticket.deleted_at is not None or user is None:
            survey.cancelled_at = now
            return False
        try:
            address = (await users.view(session, runtime, user)).email
        except errors.DomainError:  # the requester's data was disposed of
            survey.cancelled_at = now
            return False
        session.add(
            NotificationLog(
                key=key,
                channel="email",
                ticket_id=ticket.id,
                recipient_id=user.id,
                kind="satisfaction_survey",
                sent_at=now,
            )
        )
        survey.sent_at = now
        await analytics_facts.record(
            session, ticket, tags=ticket_tags.analytics_tokens(runtime), at=now, surveys=True
        )
        number = ticket.number
    token = token_for(runtime, survey_id)
    link = portal_url(runtime.settings, f"tickets/{survey.ticket_id}/satisfaction#token={token}")
    hours = runtime.settings.csat_survey_life_hours
    message = EmailMessage(
        to=address,
        subject=f"[{PRODUCT}] How did we do on ticket #{number}?",
        body=(
            f"Hello,\n\nTicket #{number} was resolved. Please rate the help you received "
            f"(1 to 5) within {hours} hours:\n\n{link}\n\nOne answer per resolution; "
            f"if you reopen the ticket, this survey is withdrawn.\n\n-- {PRODUCT}\n"
        ),
        message_key=key,
    )
    try:
        await runtime.email.send(message)
    except EmailTransientError as exc:
        if exc.maybe_delivered:  # handed over, then the line broke: never send twice
            return True
        await _unsend(runtime, survey_id, key)
        raise
    except EmailPermanentError:
        await _unsend(runtime, survey_id, key)
        raise
    return True


async def _unsend(runtime: Runtime, survey_id: uuid.UUID, key: str) -> None:
    """Nothing was handed over: the survey is unsent again (a later round retries)."""
    async with runtime.database.transaction() as session:
        survey = await session.get(SatisfactionSurvey, survey_id)
        claim = await session.get(NotificationLog, key)
        if claim is not None:
            await session.delete(claim)
        if survey is None:
            return
        survey.sent_at = None
        ticket = await session.get(Ticket, survey.ticket_id)
        await session.flush()
        if ticket is not None:
            await analytics_facts.record(
                session,
                ticket,
                tags=ticket_tags.analytics_tokens(runtime),
                at=utcnow(),
                surveys=True,
            )


@dataclass(frozen=True, slots=True)
class SurveyView:
    ticket_id: uuid.UUID
    resolution: int
    sent_at: datetime | None
    expires_at: datetime
    answered_at: datetime | None
    rating: int | None
    comment: str | None


def _comment_row(survey_id: uuid.UUID) -> str:
    return str(survey_id)


async def answer(
    runtime: Runtime,
    ticket_id: uuid.UUID,
    *,
    rating: int,
    comment: str | None,
    user: User | None,
    token: str | None,
) -> SurveyView:
    """Record the answer to the ticket's open survey: by its requester (`user`) or by the
    holder of the link's `token`. 404 for a ticket the caller may not answer for, 409 when
    there is no open survey (none sent, cancelled by a reopen, or already answered), 410
    once it expired."""
    now = utcnow()
    async with runtime.database.transaction() as session:
        ticket = await session.get(Ticket, ticket_id, with_for_update=True)
        if ticket is None or ticket.deleted_at is not None:
            raise errors.NotFound("ticket not found")
        query = select(SatisfactionSurvey).where(SatisfactionSurvey.ticket_id == ticket_id)
        if token is not None:
            query = query.where(SatisfactionSurvey.token_hash == token_hash(token))
        elif user is None or user.id != ticket.requester_id:
            raise errors.NotFound("ticket not found")
        surveys = list(await session.scalars(query.order_by(SatisfactionSurvey.resolution)))
        if token is not None and not surveys:
            raise errors.NotFound("ticket not found")  # a wrong token learns nothing
        survey = surveys[-1] if surveys else None
        if survey is None or survey.sent_at is None or survey.cancelled_at is not None:
            raise errors.Conflict("this ticket has no open satisfaction survey")
        if survey.answered_at is not None:
            raise errors.Conflict("this survey was already answered")
        if survey.expires_at <= now:
            raise errors.Gone("this survey has expired")
        survey.rating = rating
        survey.answered_at = now
        survey.answered_by = user.id if user is not None else None
        if comment:
            key = await runtime.keys.get(session, ticket.data_key_id)
            survey.comment_enc = encrypt_field(
                key, comment, table=TABLE, column="comment", row_id=_comment_row(survey.id)
            )
        await session.flush()
        await analytics_facts.record(
            session, ticket, tags=ticket_tags.analytics_tokens(runtime), at=now, surveys=True
        )
        await runtime.audit.record(
            session,
            "ticket.satisfaction.answer",
            table=TABLE,
            record_id=survey.id,
            details={
                "ticket_id": str(ticket_id),
                "rating": rating,
                "by": "requester" if user is not None else "token",
                "comment": bool(comment),
            },
            actor_id=user.id if user is not None else None,
        )
        return SurveyView(
            ticket_id, survey.resolution, survey.sent_at, survey.expires_at, now, rating, comment
        )


async def surveys_of(session: AsyncSession, runtime: Runtime, ticket: Ticket) -> list[SurveyView]:
    """Every survey of a ticket, comments opened (the caller was checked: staff, or the
    requester), audited as a PHI read."""
    found = list(
        await session.scalars(
            select(SatisfactionSurvey)
            .where(SatisfactionSurvey.ticket_id == ticket.id)
            .order_by(SatisfactionSurvey.resolution)
        )
    )
    key = None
    if any(s.comment_enc for s in found):
        key = await runtime.keys.get(session, ticket.data_key_id)
    views = []
    for s in found:
        comment = None
        if key is not None and s.comment_enc:
            comment = decrypt_field(
                key, s.comment_enc, table=TABLE, column="comment", row_id=_comment_row(s.id)
            )
        views.append(
            SurveyView(
                ticket.id, s.resolution, s.sent_at, s.expires_at, s.answered_at, s.rating, comment
            )
        )
    await runtime.audit.record(
        session, "ticket.satisfaction.read", table="tickets", record_id=ticket.id
    )
    return views
