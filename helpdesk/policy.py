"""Pure access-policy functions: who may see and do what. One place decides each rule."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from models.enums import STAFF_ROLES, Role


class Caller(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def role(self) -> Role: ...


class TicketLike(Protocol):
    requester_id: uuid.UUID
    assignee_id: uuid.UUID | None


def is_staff(role: Role | str) -> bool:
    return Role(role) in STAFF_ROLES


def can_view_ticket(caller: Caller, ticket: TicketLike) -> bool:
    """Staff see every ticket; an end user only their own."""
    return is_staff(caller.role) or ticket.requester_id == caller.id


def can_see_internal(role: Role | str) -> bool:
    """Internal notes (and internal attachments) are for staff only, on every channel."""
    return is_staff(role)


def history_entry_visible(role: Role | str, action: str, changes: dict[str, Any]) -> bool:
    """Whether a ticket history entry may be shown to a caller of `role`: entries about an
    internal note (added, edited, deleted) or an internal attachment (uploaded, released,
    blocked, deleted) are for those who may see internal notes."""
    about = action.startswith(("comment_", "attachment_"))
    if about and changes.get("internal") is not False:
        return can_see_internal(role)
    return True


def can_see_escalation_target(role: Role | str) -> bool:
    """Who a ticket was escalated to is internal routing, for staff only (escalation pushes
    go to staff rooms only, too); an end user sees that and when it was escalated."""
    return is_staff(role)


# Fields a requester may change on their own ticket; staff change every field.
REQUESTER_EDITABLE = frozenset({"title", "description", "tags"})
STAFF_ONLY_FIELDS_MESSAGE = "these fields are for staff only"


def fields_refused_to(role: Role | str, fields: set[str] | frozenset[str]) -> list[str]:
    """The fields of a ticket edit a caller of `role` may not change (none for staff). The
    API and the ticket workflow both refuse such an edit with 403 (PermissionDenied)."""
    return [] if is_staff(role) else sorted(set(fields) - REQUESTER_EDITABLE)


def can_edit_ticket_fields(caller: Caller, ticket: TicketLike) -> bool:
    """Staff edit any ticket; a requester edits their own."""
    return can_view_ticket(caller, ticket)


def can_delete_ticket(caller: Caller) -> bool:
    return Role(caller.role) is Role.ADMINISTRATOR
