"""Who hears of each ticket change: the pure mapping `helpdesk.rules.notify.notifications_for`
from a ChangeEvent and the ticket's state to the exact email and push activity inputs.

The workflow run of the same mapping (real worker, real activities) is in
tests/api/test_comments.py."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from activities.notifications import NotifyInput, PushInput
from helpdesk import push
from helpdesk.notifications import NotificationKind
from helpdesk.rules.contracts import ChangeEvent, TicketState
from helpdesk.rules.notify import CREATED, NOTIFIED_BY_SLA, PushEvent, notifications_for
from helpdesk.rules.transitions import Status
from models.enums import Priority, Role, TicketStatus

TICKET = uuid.UUID("00000000-0000-4000-8000-000000000001")
REQUESTER = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
OTHER_AGENT = uuid.UUID("00000000-0000-4000-8000-0000000000b2")
COMMENT = uuid.UUID("00000000-0000-4000-8000-0000000000c1")


def state(**overrides: object) -> TicketState:
    values: dict[str, object] = {
        "ticket_id": TICKET,
        "number": 42,
        "requester_id": REQUESTER,
        "status": Status.OPEN,
        "priority": "HIGH",
    }
    values.update(overrides)
    return TicketState(**values)


def emails(items: list[NotifyInput | PushInput]) -> list[NotifyInput]:
    return [n for n in items if isinstance(n, NotifyInput)]


def pushes(items: list[NotifyInput | PushInput]) -> list[PushInput]:
    return [n for n in items if isinstance(n, PushInput)]


def comment(author: uuid.UUID, role: str, *, internal: bool, rid: str = "r-1") -> ChangeEvent:
    return ChangeEvent(
        action="comment_added",
        request_id=rid,
        changes={
            "comment_id": str(COMMENT),
            "author_id": str(author),
            "author_role": role,
            "internal": internal,
            "first_response": False,
        },
    )


def test_created_emails_the_requester_and_pushes_ticket_created() -> None:
    out = notifications_for(ChangeEvent(action=CREATED, request_id=CREATED), state())
    assert out == [
        NotifyInput(
            kind=NotificationKind.TICKET_CREATED,
            event_key="created",
            recipient_id=REQUESTER,
            ticket_id=TICKET,
            status=TicketStatus.OPEN,
            priority=Priority.HIGH,
        ),
        PushInput(
            event=PushEvent.TICKET_CREATED,
            event_id=f"{TICKET}:created",
            ticket_id=TICKET,
            status=TicketStatus.OPEN,
            priority=Priority.HIGH,
        ),
    ]


def test_created_with_an_auto_assigned_agent_also_tells_the_agent() -> None:
    out = notifications_for(
        ChangeEvent(action=CREATED, request_id=CREATED), state(assignee_id=AGENT)
    )
    assert [(n.kind, n.recipient_id) for n in emails(out)] == [
        (NotificationKind.TICKET_CREATED, REQUESTER),
        (NotificationKind.TICKET_ASSIGNED, AGENT),
    ]
    assert pushes(out)[0].assignee_id == AGENT


def test_assigned_emails_the_new_agent_unless_they_took_it_themselves() -> None:
    event = ChangeEvent(
        action="assigned",
        request_id="k-assign",
        changes={"assignee_id": {"old": None, "new": str(AGENT)}},
    )
    out = notifications_for(event, state(assignee_id=AGENT))
    assert [(n.kind, n.recipient_id, n.event_key) for n in emails(out)] == [
        (NotificationKind.TICKET_ASSIGNED, AGENT, "k-assign")
    ]
    assert pushes(out) == [
        PushInput(
            event=PushEvent.TICKET_ASSIGNED,
            event_id=f"{TICKET}:k-assign",
            ticket_id=TICKET,
            assignee_id=AGENT,
        )
    ]
    self_assigned = ChangeEvent(
        action="assigned",
        request_id="k-assign",
        changes={"assignee_id": {"old": None, "new": str(AGENT)}, "actor_id": str(AGENT)},
    )
    assert emails(notifications_for(self_assigned, state(assignee_id=AGENT))) == []


def test_status_change_emails_the_requester_with_old_and_new_status() -> None:
    event = ChangeEvent(
        action="status_changed",
        request_id="r-status",
        changes={"status": {"old": "IN_PROGRESS", "new": "RESOLVED"}},
    )
    out = notifications_for(event, state(status=Status.RESOLVED, assignee_id=AGENT))
    (mail,) = emails(out)
    assert (mail.kind, mail.recipient_id) == (NotificationKind.STATUS_CHANGED, REQUESTER)
    assert (mail.status, mail.previous_status) == (TicketStatus.RESOLVED, TicketStatus.IN_PROGRESS)
    (event_out,) = pushes(out)
    assert event_out.event is PushEvent.TICKET_STATUS_CHANGED
    assert (event_out.status, event_out.previous_status) == (
        TicketStatus.RESOLVED,
        TicketStatus.IN_PROGRESS,
    )


def test_a_change_the_requester_made_is_told_to_the_agent_instead() -> None:
    reopened = ChangeEvent(
        action="status_changed",
        request_id="r-1:reopen",
        changes={
            "status": {"old": "RESOLVED", "new": "OPEN"},
            "reason": "requester_reply",
            "actor_id": str(REQUESTER),
        },
    )
    out = notifications_for(reopened, state(assignee_id=AGENT))
    assert [(n.kind, n.recipient_id) for n in emails(out)] == [
        (NotificationKind.STATUS_CHANGED, AGENT)
    ]
    assert pushes(out)[0].event_id == f"{TICKET}:r-1:reopen"


def test_public_agent_reply_emails_the_requester_and_pushes_to_the_ticket() -> None:
    out = notifications_for(
        comment(AGENT, "SUPPORT_AGENT", internal=False), state(assignee_id=AGENT)
    )
    assert emails(out) == [
        NotifyInput(
            kind=NotificationKind.PUBLIC_REPLY,
            event_key="r-1",
            recipient_id=REQUESTER,
            ticket_id=TICKET,
        )
    ]
    assert pushes(out) == [
        PushInput(
            event=PushEvent.COMMENT_ADDED,
            event_id=f"{TICKET}:r-1",
            ticket_id=TICKET,
            comment_id=COMMENT,
            internal=False,
        )
    ]


def test_requester_reply_emails_the_assignee_and_nobody_without_one() -> None:
    out = notifications_for(
        comment(REQUESTER, "END_USER", internal=False), state(assignee_id=AGENT)
    )
    assert [(n.kind, n.recipient_id) for n in emails(out)] == [
        (NotificationKind.PUBLIC_REPLY, AGENT)
    ]
    unassigned = notifications_for(comment(REQUESTER, "END_USER", internal=False), state())
    assert emails(unassigned) == []
    assert [p.event for p in pushes(unassigned)] == [PushEvent.COMMENT_ADDED]


def test_internal_note_is_a_staff_push_and_never_an_email() -> None:
    out = notifications_for(
        comment(AGENT, "SUPPORT_AGENT", internal=True), state(assignee_id=OTHER_AGENT)
    )
    assert out == [
        PushInput(
            event=PushEvent.COMMENT_ADDED,
            event_id=f"{TICKET}:r-1",
            ticket_id=TICKET,
            comment_id=COMMENT,
            internal=True,
        )
    ]
    rooms = push.rooms_for(
        PushEvent.COMMENT_ADDED,
        ticket_id=TICKET,
        requester_id=REQUESTER,
        assignee_id=OTHER_AGENT,
        internal=True,
    )
    assert push.ticket_staff_room(TICKET) in rooms
    assert push.ticket_room(TICKET) not in rooms
    assert push.user_room(REQUESTER) not in rooms


def test_a_comment_event_that_does_not_say_public_is_treated_as_internal() -> None:
    event = ChangeEvent(
        action="comment_added",
        request_id="r-x",
        changes={"comment_id": str(COMMENT), "author_id": str(AGENT)},
    )
    out = notifications_for(event, state())
    assert emails(out) == []
    assert [p.internal for p in pushes(out)] == [True]


people = st.sampled_from([REQUESTER, AGENT, OTHER_AGENT, uuid.UUID(int=7)])
# An assignee is an active staff member (checked when assigned), never the END_USER requester.
staff = st.sampled_from([AGENT, OTHER_AGENT, uuid.UUID(int=7)])


@given(
    author=people,
    author_role=st.sampled_from([r.value for r in Role]),
    assignee=st.one_of(st.none(), staff),
    status=st.sampled_from(list(Status)),
    rid=st.text(alphabet="abcdef0123456789-:", min_size=1, max_size=120),
)
def test_an_end_user_never_hears_of_an_internal_note(
    author: uuid.UUID, author_role: str, assignee: uuid.UUID | None, status: Status, rid: str
) -> None:
    """Whoever wrote it and whoever is assigned: an internal note produces no email at all,
    and its push goes to rooms an end user (the requester, or anyone in the ticket room) is
    never in."""
    ticket = state(assignee_id=assignee, status=status)
    out = notifications_for(comment(author, author_role, internal=True, rid=rid), ticket)
    assert emails(out) == []
    for item in pushes(out):
        assert item.internal is True
        rooms = push.rooms_for(
            item.event,
            ticket_id=TICKET,
            requester_id=REQUESTER,
            assignee_id=item.assignee_id or ticket.assignee_id,
            escalated_to=item.escalated_to,
            internal=item.internal,
        )
        assert push.user_room(REQUESTER) not in rooms
        assert push.ticket_room(TICKET) not in rooms


def test_internal_note_never_reaches_an_assignee_who_is_no_longer_staff() -> None:
    demoted = uuid.UUID(int=99)  # assigned while an agent, since demoted to END_USER
    (item,) = pushes(
        notifications_for(
            comment(AGENT, "SUPPORT_AGENT", internal=True), state(assignee_id=demoted)
        )
    )
    rooms = push.rooms_for(
        item.event, ticket_id=TICKET, requester_id=REQUESTER, assignee_id=demoted, internal=True
    )
    assert push.user_room(demoted) not in rooms


def test_edit_pushes_an_update_and_sends_no_email() -> None:
    event = ChangeEvent(
        action="edited", request_id="r-e", changes={"priority": {"old": "LOW", "new": "HIGH"}}
    )
    out = notifications_for(event, state())
    assert out == [
        PushInput(
            event=PushEvent.TICKET_UPDATED,
            event_id=f"{TICKET}:r-e",
            ticket_id=TICKET,
            priority=Priority.HIGH,
        )
    ]


def test_escalation_tells_the_person_escalated_to_unless_the_sla_part_does() -> None:
    event = ChangeEvent(
        action="escalated",
        request_id="r-esc",
        changes={
            "escalated": {"old": False, "new": True},
            "escalation_level": {"old": 0, "new": 1},
            "escalated_to": str(OTHER_AGENT),
        },
    )
    out = notifications_for(event, state(escalated=True, escalation_level=1))
    assert [(n.kind, n.recipient_id, n.escalation_level) for n in emails(out)] == [
        (NotificationKind.ESCALATED, OTHER_AGENT, 1)
    ]
    (escalation,) = pushes(out)
    assert (escalation.event, escalation.escalation_level, escalation.escalated_to) == (
        PushEvent.TICKET_ESCALATED,
        1,
        OTHER_AGENT,
    )
    # The SLA part sends escalation notices with the same keys; the workflow skips ours.
    assert escalation.event_id == f"{TICKET}:r-esc"
    assert notifications_for(event, state(), skip=NOTIFIED_BY_SLA) == []


def test_keys_are_stable_per_change_and_distinct_between_changes() -> None:
    first = notifications_for(comment(AGENT, "SUPPORT_AGENT", internal=False, rid="k-1"), state())
    again = notifications_for(comment(AGENT, "SUPPORT_AGENT", internal=False, rid="k-1"), state())
    other = notifications_for(comment(AGENT, "SUPPORT_AGENT", internal=False, rid="k-2"), state())
    assert first == again
    assert {n.notification_key for n in emails(first)}.isdisjoint(
        n.notification_key for n in emails(other)
    )
    assert {p.event_id for p in pushes(first)}.isdisjoint(p.event_id for p in pushes(other))


def test_long_request_ids_still_make_valid_inputs() -> None:
    out = notifications_for(comment(AGENT, "SUPPORT_AGENT", internal=False, rid="x" * 300), state())
    assert len(emails(out)[0].event_key) == 100
    assert len(pushes(out)[0].event_id) == 200


def test_changes_without_notifications_produce_none() -> None:
    assert notifications_for(ChangeEvent(action="sla.fulfilled", request_id="r"), state()) == []
