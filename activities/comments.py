"""Comment activity of the ticket workflow: the timeline entry of an accepted comment.

The comment row itself (its sealed body) was committed by the API before the workflow heard
of it (`helpdesk.services.comments.add`); this activity writes what the workflow decided:
the ticket history entry `comment_added` (ids and flags only, never the text), the audit
row, the ticket's version, and `first_response_at` when the reply fulfils first response.

Idempotent: the history entry's (ticket, event key) is unique and the event key is the
command's request id, so a retried activity writes nothing twice and answers
``applied=False``.
"""

from __future__ import annotations

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from helpdesk.analytics import facts as analytics_facts
from helpdesk.context import RequestContext, set_context
from helpdesk.rules.activity_contracts import (
    COMMENT_ADDED,
    ActivityName,
    CommentRecord,
    CommentRecorded,
)
from helpdesk.rules.contracts import Failure
from helpdesk.runtime import Runtime
from models.base import utcnow
from models.comment import Comment
from models.enums import STAFF_ROLES
from models.ticket import Ticket, TicketHistory


class CommentActivities:
    """Activities of comments, around the process's Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def all(self) -> list[object]:
        return [self.record_comment]

    @activity.defn(name=ActivityName.RECORD_TICKET_COMMENT)
    async def record_comment(self, record: CommentRecord) -> CommentRecorded:
        """Write the `comment_added` history entry and its audit row, once per event key."""
        actor = record.actor
        # The audit row names the comment's author and their request, not the worker.
        set_context(
            RequestContext(
                request_id=(actor.http_request_id or record.event_key)[:64],
                ip=actor.ip,
                user_agent=actor.user_agent,
                actor_id=actor.id,
                actor_role=actor.role,
            )
        )
        async with self.runtime.database.transaction() as session:
            ticket = await session.get(Ticket, record.ticket_id, with_for_update=True)
            if ticket is None or ticket.deleted_at is not None:
                raise ApplicationError(
                    "the ticket was deleted", type=Failure.TICKET_GONE, non_retryable=True
                )
            done = await session.scalar(
                select(TicketHistory.id).where(
                    TicketHistory.ticket_id == record.ticket_id,
                    TicketHistory.event_key == record.event_key,
                )
            )
            if done is not None:
                return CommentRecorded(applied=False)
            comment = await session.get(Comment, record.comment_id)
            if comment is None or comment.ticket_id != record.ticket_id:
                # The API commits the row before it sends the update: this is a bug or a
                # forged update, never something a retry fixes.
                raise ApplicationError(
                    "the comment does not belong to this ticket",
                    type=Failure.VALIDATION_FAILED,
                    non_retryable=True,
                )
            now = utcnow()
            changes: dict[str, object] = {
                "comment_id": str(record.comment_id),
                "internal": record.internal,
                "author_role": actor.role,
            }
            if record.first_response and not record.internal and ticket.first_response_at is None:
                ticket.first_response_at = now
                changes["first_response"] = True
            ticket.version = max(ticket.version, record.version)
            if not record.internal:
                # An internal note does not move what the requester sees as "updated".
                ticket.updated_at = now
                ticket.updated_by = actor.id
            session.add(
                TicketHistory(
                    ticket_id=record.ticket_id,
                    event_key=record.event_key,
                    at=now,
                    actor_id=actor.id,
                    action=COMMENT_ADDED,
                    changes=changes,
                )
            )
            await session.flush()
            await analytics_facts.record(
                session,
                ticket,
                at=now,
                staff_reply=not record.internal and actor.role in STAFF_ROLES,
            )
            await self.runtime.audit.record(
                session,
                f"ticket.{COMMENT_ADDED}",
                table="tickets",
                record_id=record.ticket_id,
                details={
                    "event_key": record.event_key,
                    "comment_id": str(record.comment_id),
                    "internal": record.internal,
                },
                actor_id=actor.id,
                actor_role=actor.role,
            )
            return CommentRecorded(applied=True)
