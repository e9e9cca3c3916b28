"""The create activity, attempted again after its first attempt committed (the commit
outlived the answer): the repeat answers from the row the first one wrote, and writes
nothing a second time, nor sends the creation's email twice. When the email cannot go out
yet, the activity says so (`notified` False) and the ticket is written all the same."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.tickets import TicketActivities, _NewState
from helpdesk.email import EmailTransientError, FileEmailBackend
from helpdesk.rules.contracts import Actor, ChangeEvent, SealedTicket, TicketCreated, TicketState
from helpdesk.rules.notify import CREATED, NOTIFIED_BY_SLA, NotifyInput, notifications_for
from helpdesk.runtime import Runtime
from helpdesk.services.tickets import NewTicket, seal_new
from models.audit import AuditLog
from models.ticket import IdempotencyRecord, NotificationLog, Ticket, TicketHistory, TicketTag
from tests.support.factories import make_user


async def _sealed(runtime: Runtime, requester_id: uuid.UUID) -> SealedTicket:
    async with runtime.database.read() as session:
        return await seal_new(
            session,
            runtime,
            ticket_id=uuid.uuid4(),
            number=await runtime.ticket_numbers.take(),
            requester=Actor(id=requester_id, role="END_USER"),
            data=NewTicket(title="Printer on fire", description=None, tags=("hardware",)),
            auto_assign=False,
            idempotency_key="key-1",
        )


def _mails_about(runtime: Runtime, number: int) -> list[dict[str, str]]:
    email = runtime.email
    assert isinstance(email, FileEmailBackend)
    return [m for m in email.messages() if re.search(rf"#{number}\b", m["subject"])]


async def test_a_repeated_create_answers_from_the_row_and_writes_nothing_twice(
    runtime: Runtime,
) -> None:
    requester = await make_user(runtime)
    sealed = await _sealed(runtime, requester.id)
    activities = TicketActivities(runtime)

    first = await ActivityEnvironment().run(activities.create_ticket, sealed)
    again = await ActivityEnvironment().run(activities.create_ticket, sealed)

    assert first.applied and not again.applied
    assert first.notified and again.notified
    # The requester heard of the new ticket once: the repeat found the email's claim.
    assert len(_mails_about(runtime, sealed.number)) == 1
    assert again.sla == first.sla
    assert (again.assignee_id, again.due_date, again.version) == (
        first.assignee_id,
        first.due_date,
        first.version,
    )
    async with runtime.database.read() as session:
        for model in (Ticket, TicketHistory, TicketTag, IdempotencyRecord, NotificationLog):
            assert await session.scalar(select(func.count()).select_from(model)) == 1
        actions = (await session.scalars(select(AuditLog.action))).all()
        assert actions.count("ticket.create") == 1
        assert (await runtime.audit.verify(session)).ok


class _Down(FileEmailBackend):
    async def send(self, message: object) -> None:
        raise EmailTransientError("the mail server is down")


async def test_a_creation_whose_email_cannot_go_out_yet_is_written_and_says_so(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requester = await make_user(runtime)
    sealed = await _sealed(runtime, requester.id)
    activities = TicketActivities(runtime)
    working = runtime.email
    monkeypatch.setattr(runtime, "email", _Down(tmp_path / "unused.jsonl"))

    created = await ActivityEnvironment().run(activities.create_ticket, sealed)

    assert created.applied and not created.notified  # the workflow sends it, with retries
    async with runtime.database.read() as session:
        assert await session.get(Ticket, sealed.ticket_id) is not None
        # The claim was released: the retry may send it.
        assert await session.scalar(select(func.count()).select_from(NotificationLog)) == 0
    monkeypatch.setattr(runtime, "email", working)
    again = await ActivityEnvironment().run(activities.create_ticket, sealed)
    assert not again.applied and again.notified
    assert len(_mails_about(runtime, sealed.number)) == 1


@pytest.mark.parametrize("assigned", [False, True], ids=["unassigned", "auto-assigned"])
def test_the_activity_chooses_what_the_workflow_would(assigned: bool) -> None:
    """Same emails, keys and push id as the workflow's own choice after its create step:
    when the workflow sends them after all, what already went out answers duplicate."""
    requester, agent = uuid.uuid4(), uuid.uuid4()
    sealed = SealedTicket(
        ticket_id=uuid.uuid4(),
        number=7,
        requester=Actor(id=requester, role="END_USER"),
        priority="HIGH",
        key_id=uuid.uuid4(),
        kek_id="kek",
        wrapped_key="",
        title_enc="",
    )
    created = TicketCreated(applied=True, assignee_id=agent if assigned else None)
    workflow_state = TicketState(
        ticket_id=sealed.ticket_id,
        number=7,
        requester_id=requester,
        priority="HIGH",
        assignee_id=created.assignee_id,
    )
    event = ChangeEvent(action=CREATED, request_id=CREATED)
    ours = notifications_for(event, _NewState(sealed, created))
    assert ours == notifications_for(event, workflow_state, skip=NOTIFIED_BY_SLA)
    assert len([n for n in ours if isinstance(n, NotifyInput)]) == (2 if assigned else 1)
