"""Comments: public replies and internal notes on a ticket.

Rules (each decided in one place):

- Who reads and writes: whoever may view the ticket (`helpdesk.policy.can_view_ticket`);
  anyone else gets 404, as if the ticket did not exist (the refusal is audited). A deleted
  ticket answers 410.
- Internal notes: only those `helpdesk.policy.can_see_internal` admits (staff) write or see
  them. An end user asking for ``is_internal: true`` gets 403; an internal note is never
  listed for them and its id answers 404.
- Editing: the author only, whatever their role. Administrators do not edit other people's
  words either: an edited comment still names its author, so an edit by someone else would
  put words in their mouth. Only the body changes; a comment never moves between public and
  internal (that would widen or narrow who has already read it).
- Deleting: the author, or an ADMINISTRATOR (moderation, e.g. PHI posted on the wrong
  ticket). A deletion disposes of the text (the ciphertext is dropped; SQLite runs with
  ``secure_delete``) and keeps a tombstone row.
- A CLOSED ticket's conversation is final: no new comment, no edit, no deletion by the
  author (409); an administrator may still delete.
- History and audit: every edit and deletion adds a ticket history entry
  (``comment_edited`` / ``comment_deleted``: ids and flags, never text) and an audit row.
  A new comment's history entry (``comment_added``) is written by the ticket's workflow
  (`activities.comments`), because adding goes through it.

Encryption: the body is sealed under the TICKET's data key (AES-256-GCM, associated data
``comments|body|<comment id>|<key id>``), so disposing of the ticket's key shreds its
comments too.

Adding goes through the ticket's workflow: the row is committed first (sealed), then the
workflow gets ``add_comment`` (ids only; `workflows.ticket_comments`). If the workflow
refuses or cannot be reached, the row is withdrawn (tombstoned), so a comment never exists
that the timeline and SLA clocks did not hear of. (If the workflow applied it but its answer
was lost, the timeline keeps an entry for a withdrawn comment: harmless, and a retry with
the same Idempotency-Key is refused with 409 rather than duplicated.)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import errors, policy
from helpdesk.context import current_context
from helpdesk.crypto import DataKey, IntegrityError, decrypt_field, encrypt_field
from helpdesk.rules.contracts import CommentAdded, TicketCommand, TicketState
from helpdesk.runtime import Runtime
from helpdesk.services import ticket_workflow, tickets
from models.base import utcnow
from models.comment import Comment
from models.enums import Role, TicketStatus
from models.ticket import Ticket, TicketHistory

TABLE = "comments"
COLUMN = "body"


# --- pure rules --------------------------------------------------------------------------


def may_see(role: Role | str, comment: Comment) -> bool:
    """Whether a caller of `role` may see this comment (given they may view its ticket)."""
    return not comment.is_internal or policy.can_see_internal(role)


def may_edit(caller: policy.Caller, comment: Comment) -> bool:
    """Authors edit their own comments; nobody edits anyone else's."""
    return comment.author_id == caller.id


def may_delete(caller: policy.Caller, comment: Comment) -> bool:
    """Authors delete their own; administrators any (moderation)."""
    return comment.author_id == caller.id or Role(caller.role) is Role.ADMINISTRATOR


# --- sealing -----------------------------------------------------------------------------


def seal_body(key: DataKey, comment_id: uuid.UUID, body: str) -> bytes:
    return encrypt_field(key, body, table=TABLE, column=COLUMN, row_id=comment_id)


def open_body(key: DataKey, comment_id: uuid.UUID, blob: bytes | None) -> str | None:
    """The body, or None when it was deleted. A failed integrity check is an error (and an
    audit row), never garbled text."""
    if blob is None:
        return None
    try:
        return decrypt_field(key, blob, table=TABLE, column=COLUMN, row_id=comment_id)
    except IntegrityError as exc:
        raise errors.DataIntegrityError(
            "a stored comment failed its integrity check",
            audit={
                "action": "comment.integrity",
                "outcome": "failure",
                "table": TABLE,
                "record_id": comment_id,
            },
        ) from exc


# --- views -------------------------------------------------------------------------------


@dataclass
class CommentView:
    """A comment with its body decrypted, for the API."""

    id: uuid.UUID
    ticket_id: uuid.UUID
    author_id: uuid.UUID
    body: str | None
    is_internal: bool
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None
    # On POST: the ticket's live state after the comment (a requester's reply may reopen).
    workflow: TicketState | None = None
    replayed: bool = False


@dataclass
class CommentPage:
    items: list[CommentView]
    page: int
    page_size: int
    has_more: bool


def _view(comment: Comment, body: str | None) -> CommentView:
    return CommentView(
        id=comment.id,
        ticket_id=comment.ticket_id,
        author_id=comment.author_id,
        body=body,
        is_internal=comment.is_internal,
        created_at=comment.created_at,
        updated_at=comment.updated_at,
        edited_at=comment.edited_at,
    )


# --- loading with the access checks --------------------------------------------------------


def _hidden(table: str, record_id: uuid.UUID, what: str) -> errors.NotFound:
    """404 for an object that exists but that the caller may not see (audited)."""
    return errors.NotFound(
        f"{what} not found",
        audit={
            "action": "comment.access",
            "outcome": "denied",
            "table": table,
            "record_id": record_id,
        },
    )


async def visible_ticket(
    session: AsyncSession, caller: policy.Caller, ticket_id: uuid.UUID
) -> Ticket:
    """The ticket if the caller may view it (404 otherwise), 410 once it was deleted."""
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise errors.NotFound("ticket not found")
    if not policy.can_view_ticket(caller, ticket):
        raise _hidden("tickets", ticket_id, "ticket")
    if ticket.deleted_at is not None:
        raise errors.Gone("this ticket was deleted")
    return ticket


async def visible_comment(
    session: AsyncSession, caller: policy.Caller, comment_id: uuid.UUID
) -> tuple[Comment, Ticket]:
    """A comment and its ticket if the caller may see both (404), 410 when either was
    deleted."""
    comment = await session.get(Comment, comment_id)
    if comment is None:
        raise errors.NotFound("comment not found")
    ticket = await session.get(Ticket, comment.ticket_id)
    if (
        ticket is None
        or not policy.can_view_ticket(caller, ticket)
        or not may_see(caller.role, comment)
    ):
        raise _hidden(TABLE, comment_id, "comment")
    if ticket.deleted_at is not None:
        raise errors.Gone("this ticket was deleted")
    if comment.deleted_at is not None:
        raise errors.Gone("this comment was deleted")
    return comment, ticket


def _closed(ticket: Ticket) -> errors.InvalidTransition:
    return errors.InvalidTransition(
        "the ticket is closed", details={"current": ticket.status, "allowed": []}
    )


# --- writes ------------------------------------------------------------------------------


async def insert_comment(
    session: AsyncSession,
    runtime: Runtime,
    *,
    ticket: Ticket,
    author_id: uuid.UUID,
    body: str,
    internal: bool,
    comment_id: uuid.UUID | None = None,
) -> Comment:
    """The comment row with its body sealed under the ticket's key, and its audit row, in
    the caller's transaction (no workflow: `add` sends the update after the commit)."""
    key = await runtime.keys.get(session, ticket.data_key_id)
    comment_id = comment_id or uuid.uuid4()
    comment = Comment(
        id=comment_id,
        ticket_id=ticket.id,
        author_id=author_id,
        body_enc=seal_body(key, comment_id, body),
        is_internal=internal,
        created_by=author_id,
        updated_by=author_id,
    )
    session.add(comment)
    await session.flush()
    await runtime.audit.record(
        session,
        "comment.create",
        table=TABLE,
        record_id=comment_id,
        details={"ticket_id": str(ticket.id), "internal": internal},
    )
    return comment


def _comment_id(ticket_id: uuid.UUID, request_id: str, idempotency_key: str | None) -> uuid.UUID:
    """Same Idempotency-Key on the same ticket → same comment; otherwise a fresh id."""
    return uuid.uuid5(ticket_id, request_id) if idempotency_key else uuid.uuid4()


async def add(
    runtime: Runtime,
    caller: policy.Caller,
    ticket_id: uuid.UUID,
    *,
    body: str,
    internal: bool,
    idempotency_key: str | None = None,
) -> CommentView:
    """Add a comment: commit the sealed row, then put it on the ticket's timeline through
    its workflow (`add_comment`). Answers with the comment and the ticket's new state."""
    role = Role(caller.role)
    if internal and not policy.can_see_internal(role):
        # Refused for the caller's role, not for the request's shape: 403 (and audited).
        raise errors.PermissionDenied(
            "only staff write internal notes",
            details={"field": "is_internal"},
            audit={
                "action": "access.denied",
                "outcome": "denied",
                "table": "tickets",
                "record_id": ticket_id,
                "details": {"why": "internal_note"},
            },
        )
    request_id = tickets.command_request_id(caller.id, idempotency_key)
    comment_id = _comment_id(ticket_id, request_id, idempotency_key)
    replayed = False
    async with runtime.database.transaction() as session:
        ticket = await visible_ticket(session, caller, ticket_id)
        if ticket.status == TicketStatus.CLOSED.value:
            raise _closed(ticket)
        existing = await session.get(Comment, comment_id) if idempotency_key else None
        if existing is not None:
            await _check_replay(session, runtime, ticket, existing, caller, body, internal)
            comment, replayed = existing, True
        else:
            comment = await insert_comment(
                session,
                runtime,
                ticket=ticket,
                author_id=caller.id,
                body=body,
                internal=internal,
                comment_id=comment_id,
            )
        view = _view(comment, body)
    ctx = current_context()
    event = CommentAdded(
        request_id=request_id,
        comment_id=comment.id,
        author_id=caller.id,
        author_role=role.value,
        is_internal=internal,
        reopen_on_requester_reply=runtime.settings.reopen_on_requester_reply,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        http_request_id=ctx.request_id,
    )
    try:
        view.workflow = await ticket_workflow.send_update(
            runtime, ticket_id, TicketCommand.ADD_COMMENT, event
        )
    except errors.DomainError:
        if not replayed:
            await _withdraw(runtime, comment.id, ticket_id)
        raise
    view.replayed = replayed
    return view


async def _check_replay(
    session: AsyncSession,
    runtime: Runtime,
    ticket: Ticket,
    existing: Comment,
    caller: policy.Caller,
    body: str,
    internal: bool,
) -> None:
    """A retry with the same Idempotency-Key must be the same request."""
    if existing.deleted_at is not None:
        raise errors.Conflict(
            "the comment of this Idempotency-Key was withdrawn or deleted; use a new key",
            details={"header": "Idempotency-Key"},
        )
    key = await runtime.keys.get(session, ticket.data_key_id)
    same = (
        existing.ticket_id == ticket.id
        and existing.author_id == caller.id
        and existing.is_internal == internal
        and open_body(key, existing.id, existing.body_enc) == body
    )
    if not same:
        raise errors.ValidationFailed(
            "this Idempotency-Key was already used with a different request",
            details={"header": "Idempotency-Key"},
        )


async def _withdraw(runtime: Runtime, comment_id: uuid.UUID, ticket_id: uuid.UUID) -> None:
    """The workflow did not take the comment: tombstone the row (text disposed of)."""
    async with runtime.database.transaction() as session:
        comment = await session.get(Comment, comment_id)
        if comment is None or comment.deleted_at is not None:
            return
        comment.body_enc = None
        comment.deleted_at = utcnow()
        await runtime.audit.record(
            session,
            "comment.create",
            outcome="failure",
            table=TABLE,
            record_id=comment_id,
            details={"ticket_id": str(ticket_id), "withdrawn": True},
        )


async def list_comments(
    runtime: Runtime,
    caller: policy.Caller,
    ticket_id: uuid.UUID,
    *,
    page: int = 1,
    page_size: int = 50,
) -> CommentPage:
    """A ticket's comments the caller may see, oldest first (deleted ones left out)."""
    page_size = max(1, min(page_size, runtime.settings.max_page_size))
    page = max(1, page)
    internal_ok = policy.can_see_internal(caller.role)
    async with runtime.database.transaction() as session:
        ticket = await visible_ticket(session, caller, ticket_id)
        query = select(Comment).where(Comment.ticket_id == ticket_id, Comment.deleted_at.is_(None))
        if not internal_ok:
            query = query.where(Comment.is_internal.is_(False))
        rows: Sequence[Comment] = list(
            await session.scalars(
                query.order_by(Comment.created_at, Comment.id)
                .offset((page - 1) * page_size)
                .limit(page_size + 1)
            )
        )
        has_more = len(rows) > page_size
        rows = rows[:page_size]
        key = await runtime.keys.get(session, ticket.data_key_id)
        items = [
            _view(c, open_body(key, c.id, c.body_enc)) for c in rows if may_see(caller.role, c)
        ]
        await runtime.audit.record(
            session,
            "comment.read",
            table="tickets",
            record_id=ticket_id,
            details={"count": len(items), "internal_included": internal_ok, "page": page},
        )
    return CommentPage(items=items, page=page, page_size=page_size, has_more=has_more)


async def edit(
    runtime: Runtime, caller: policy.Caller, comment_id: uuid.UUID, *, body: str
) -> CommentView:
    """Replace the body of one's own comment; history and audit record that it changed."""
    async with runtime.database.transaction() as session:
        comment, ticket = await visible_comment(session, caller, comment_id)
        if not may_edit(caller, comment):
            raise errors.PermissionDenied(
                "only the author may edit a comment",
                audit={
                    "action": "comment.update",
                    "outcome": "denied",
                    "table": TABLE,
                    "record_id": comment_id,
                },
            )
        if ticket.status == TicketStatus.CLOSED.value:
            raise _closed(ticket)
        key = await runtime.keys.get(session, ticket.data_key_id)
        now = utcnow()
        comment.body_enc = seal_body(key, comment.id, body)
        comment.edited_at = now
        comment.updated_at = now
        comment.updated_by = caller.id
        await _history(session, caller, comment, "comment_edited", {"body": {"changed": True}})
        await runtime.audit.record(
            session,
            "comment.update",
            table=TABLE,
            record_id=comment.id,
            details={"ticket_id": str(ticket.id), "internal": comment.is_internal},
        )
        return _view(comment, body)


async def delete(runtime: Runtime, caller: policy.Caller, comment_id: uuid.UUID) -> None:
    """Delete a comment: its text is disposed of, a tombstone, a history entry and an audit
    row stay."""
    async with runtime.database.transaction() as session:
        comment, ticket = await visible_comment(session, caller, comment_id)
        if not may_delete(caller, comment):
            raise errors.PermissionDenied(
                "only the author or an administrator may delete a comment",
                audit={
                    "action": "comment.delete",
                    "outcome": "denied",
                    "table": TABLE,
                    "record_id": comment_id,
                },
            )
        moderated = comment.author_id != caller.id
        closed = ticket.status == TicketStatus.CLOSED.value
        if closed and Role(caller.role) is not Role.ADMINISTRATOR:
            raise _closed(ticket)
        now = utcnow()
        comment.body_enc = None
        comment.deleted_at = now
        comment.updated_at = now
        comment.updated_by = caller.id
        await _history(session, caller, comment, "comment_deleted", {"moderated": moderated})
        await runtime.audit.record(
            session,
            "comment.delete",
            table=TABLE,
            record_id=comment.id,
            details={
                "ticket_id": str(ticket.id),
                "internal": comment.is_internal,
                "moderated": moderated,
            },
        )


async def _history(
    session: AsyncSession,
    caller: policy.Caller,
    comment: Comment,
    action: str,
    extra: dict[str, Any],
) -> None:
    """A ticket history entry about a comment: ids and flags, never its text."""
    session.add(
        TicketHistory(
            ticket_id=comment.ticket_id,
            event_key=f"{action}:{uuid.uuid4().hex}",
            at=utcnow(),
            actor_id=caller.id,
            action=action,
            changes={"comment_id": str(comment.id), "internal": comment.is_internal, **extra},
        )
    )
    await session.flush()
