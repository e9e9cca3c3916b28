"""The ticket state machine and who may drive it: pure code shared by the workflow's
validators, the API and the tests.

Machine: OPEN → IN_PROGRESS → RESOLVED → CLOSED, and RESOLVED → OPEN (reopen). CLOSED is
final (the ticket's workflow completes).

Who may do which transition:
- END_USER: on their own ticket only, RESOLVED → CLOSED (accept the resolution) and
  RESOLVED → OPEN (reopen). Nothing else.
- SUPPORT_AGENT, MANAGER, ADMINISTRATOR: every transition of the machine (agents work
  tickets; managers and administrators may do everything).
- SYSTEM (the help desk's own automations: auto-close, re-assignment): as staff.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Ticket status (mirrors models.enums.TicketStatus; kept here so workflow code imports
    nothing but pure modules)."""

    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    RESOLVED = "RESOLVED"
    CLOSED = "CLOSED"


STAFF = frozenset({"SUPPORT_AGENT", "MANAGER", "ADMINISTRATOR", "SYSTEM"})

# The machine itself, in a stable order (responses list allowed states in this order).
TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.OPEN: (Status.IN_PROGRESS,),
    Status.IN_PROGRESS: (Status.RESOLVED,),
    Status.RESOLVED: (Status.CLOSED, Status.OPEN),
    Status.CLOSED: (),
}

# What a requester may do to their own ticket.
_REQUESTER_MOVES: frozenset[tuple[Status, Status]] = frozenset(
    {(Status.RESOLVED, Status.CLOSED), (Status.RESOLVED, Status.OPEN)}
)

# Statuses that count as an agent's open load (RESOLVED waits on the requester).
OPEN_LOAD_STATUSES: tuple[Status, ...] = (Status.OPEN, Status.IN_PROGRESS)
FINAL_STATUSES: frozenset[Status] = frozenset({Status.CLOSED})


def machine_allows(current: Status | str, target: Status | str) -> bool:
    """Whether the state machine has the edge current → target (regardless of who asks)."""
    return Status(target) in TRANSITIONS[Status(current)]


def allowed_next(current: Status | str, role: str, *, is_requester: bool) -> list[Status]:
    """The statuses this caller may move the ticket to from `current`, in machine order."""
    here = Status(current)
    if role in STAFF:
        return list(TRANSITIONS[here])
    if not is_requester:
        return []
    return [target for target in TRANSITIONS[here] if (here, target) in _REQUESTER_MOVES]


class TransitionVerdict(StrEnum):
    ALLOWED = "allowed"
    NO_CHANGE = "no_change"  # already in that status
    ILLEGAL = "illegal"  # the machine has no such edge → 409
    NOT_PERMITTED = "not_permitted"  # a legal edge this caller may not take → 403


def judge(
    current: Status | str, target: Status | str, role: str, *, is_requester: bool
) -> TransitionVerdict:
    """Decide a requested status change. Pure; the workflow validator and handler call it."""
    here, there = Status(current), Status(target)
    if here is there:
        return TransitionVerdict.NO_CHANGE
    if not machine_allows(here, there):
        return TransitionVerdict.ILLEGAL
    if there in allowed_next(here, role, is_requester=is_requester):
        return TransitionVerdict.ALLOWED
    return TransitionVerdict.NOT_PERMITTED


def is_final(status: Status | str) -> bool:
    return Status(status) in FINAL_STATUSES
