"""Comments and internal notes: visibility by role, authorship rules, history and audit,
encryption at rest (database file and WAL, Temporal history, mail), and the trip through the
ticket's workflow (timeline, first response, reopen on the requester's reply, notifications).

The database-level tests run without Temporal. The workflow tests run a real worker with the
app's `TicketWorkflow` on the real Temporal dev server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from temporalio.client import Client

from api.app import create_app
from helpdesk import policy
from helpdesk.rules.contracts import CommentAdded, TicketState
from helpdesk.rules.sla import fulfil_first_response
from helpdesk.rules.sla import start as sla_start
from helpdesk.rules.sla_policy import SlaPolicySnapshot
from helpdesk.rules.transitions import Status
from helpdesk.runtime import Runtime
from helpdesk.services import comments, ticket_commands
from helpdesk.temporal import ticket_workflow_id
from models.audit import AuditLog
from models.comment import Comment
from models.enums import Role
from models.ticket import Ticket, TicketHistory
from tests.support.canary import assert_absent, database_files
from tests.support.comm import insert_ticket
from tests.support.comments import comment_worker
from tests.support.factories import Actor, make_user
from tests.support.tickets import create_ticket, set_status
from workflows.ticket import TicketWorkflow
from workflows.ticket_comments import on_comment, refusal

API = "/api/v1"


# --- helpers -------------------------------------------------------------------------------


async def seed(
    runtime: Runtime, ticket_id: uuid.UUID, author: Actor, body: str, *, internal: bool = False
) -> Comment:
    """A comment row as `comments.add` writes it before telling the workflow."""
    async with runtime.database.transaction() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        return await comments.insert_comment(
            session, runtime, ticket=ticket, author_id=author.id, body=body, internal=internal
        )


async def audit(runtime: Runtime, action: str, **where: Any) -> list[AuditLog]:
    async with runtime.database.transaction() as session:
        query = select(AuditLog).where(AuditLog.action == action)
        for name, value in where.items():
            query = query.where(getattr(AuditLog, name) == value)
        return list(await session.scalars(query.order_by(AuditLog.seq)))


async def history(runtime: Runtime, ticket_id: uuid.UUID | str) -> list[TicketHistory]:
    async with runtime.database.transaction() as session:
        rows = await session.scalars(
            select(TicketHistory)
            .where(TicketHistory.ticket_id == uuid.UUID(str(ticket_id)))
            .order_by(TicketHistory.at, TicketHistory.id)
        )
        return list(rows)


async def row(runtime: Runtime, model: Any, key: Any) -> Any:
    async with runtime.database.transaction() as session:
        return await session.get(model, uuid.UUID(str(key)))


def bodies(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["body"] for item in response.json()["items"]]


# --- the pure decision ----------------------------------------------------------------------

REQUESTER = uuid.UUID(int=1)
AGENT = uuid.UUID(int=2)


def event(
    author: uuid.UUID, role: str, *, internal: bool = False, reopen: bool = True
) -> CommentAdded:
    return CommentAdded(
        request_id="r-1",
        comment_id=uuid.UUID(int=9),
        author_id=author,
        author_role=role,
        is_internal=internal,
        reopen_on_requester_reply=reopen,
    )


def ticket_state(status: Status = Status.OPEN, **extra: Any) -> TicketState:
    return TicketState(
        ticket_id=uuid.UUID(int=5), number=1, requester_id=REQUESTER, status=status, **extra
    )


def test_a_public_staff_reply_fulfils_first_response_and_nothing_else_does() -> None:
    state = ticket_state()
    agent_reply = event(AGENT, "SUPPORT_AGENT")
    assert on_comment(state, agent_reply, agent_reply).first_response is True
    for other in (
        event(AGENT, "SUPPORT_AGENT", internal=True),  # an internal note
        event(REQUESTER, "END_USER"),  # the requester
        event(REQUESTER, "SUPPORT_AGENT"),  # staff replying on their own ticket
        event(AGENT, "SYSTEM"),  # the help desk itself
    ):
        assert on_comment(state, other, other).first_response is False


def test_first_response_is_fulfilled_once() -> None:
    policy = SlaPolicySnapshot(priority="MEDIUM", first_response_seconds=60, resolution_seconds=600)
    now = datetime.now(UTC)
    state = ticket_state(sla=sla_start(policy, now))
    reply = event(AGENT, "MANAGER")
    assert on_comment(state, reply, reply).first_response is True
    assert state.sla is not None
    fulfil_first_response(state.sla, now)
    assert on_comment(state, reply, reply).first_response is False


def test_a_requester_reply_reopens_a_resolved_ticket_if_the_setting_says_so() -> None:
    resolved = ticket_state(Status.RESOLVED)
    reply = event(REQUESTER, "END_USER")
    assert on_comment(resolved, reply, reply).reopen is True
    assert (
        on_comment(resolved, reply, SimpleNamespace(reopen_on_requester_reply=False)).reopen
        is False
    )
    off = event(REQUESTER, "END_USER", reopen=False)
    assert on_comment(resolved, off, off).reopen is False
    for other, state in (
        (event(AGENT, "SUPPORT_AGENT"), resolved),  # staff replies do not reopen
        (event(AGENT, "SUPPORT_AGENT", internal=True), resolved),
        (reply, ticket_state(Status.IN_PROGRESS)),  # only a RESOLVED ticket reopens
    ):
        assert on_comment(state, other, other).reopen is False


def test_an_internal_note_changes_nothing_for_the_requester() -> None:
    note = event(AGENT, "ADMINISTRATOR", internal=True)
    effects = on_comment(ticket_state(Status.RESOLVED), note, note)
    assert (
        effects.internal,
        effects.first_response,
        effects.reopen,
        effects.visible_to_requester,
    ) == (True, False, False, False)
    assert effects.changes["internal"] is True
    assert set(effects.changes) == {
        "comment_id",
        "author_id",
        "author_role",
        "internal",
        "first_response",
    }  # ids and flags: never the text


def test_the_workflow_refuses_what_the_api_refuses() -> None:
    def kind(ev: CommentAdded, state: TicketState) -> str | None:
        problem = refusal(ev, state)
        return problem.type if problem is not None else None

    assert kind(event(REQUESTER, "END_USER"), ticket_state()) is None
    assert kind(event(AGENT, "SUPPORT_AGENT", internal=True), ticket_state()) is None
    assert kind(event(REQUESTER, "END_USER", internal=True), ticket_state()) == "PermissionDenied"
    assert kind(event(uuid.UUID(int=3), "END_USER"), ticket_state()) == "PermissionDenied"
    assert kind(event(AGENT, "SUPPORT_AGENT"), ticket_state(Status.CLOSED)) == "InvalidTransition"
    assert kind(event(AGENT, "SUPPORT_AGENT"), ticket_state(gone=True)) == "TicketGone"


def test_history_entries_about_internal_notes_are_for_staff() -> None:
    internal = {"comment_id": "x", "internal": True}
    public = {"comment_id": "x", "internal": False}
    assert policy.history_entry_visible(Role.END_USER, "comment_added", internal) is False
    assert policy.history_entry_visible(Role.END_USER, "comment_deleted", internal) is False
    assert policy.history_entry_visible(Role.END_USER, "comment_added", public) is True
    assert policy.history_entry_visible(Role.SUPPORT_AGENT, "comment_edited", internal) is True
    assert policy.history_entry_visible(Role.END_USER, "status_changed", {}) is True


# --- database level: visibility, authorship, history, audit (no Temporal) -------------------


async def test_an_end_user_never_sees_internal_notes_staff_see_both(client, runtime) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    manager = await make_user(runtime, Role.MANAGER)
    ticket = await insert_ticket(runtime, requester.id)
    await seed(runtime, ticket.id, requester, "My printer is on fire")
    note = await seed(runtime, ticket.id, agent, "Staff only: user is a VIP", internal=True)
    await seed(runtime, ticket.id, agent, "Try turning it off")
    url = f"{API}/tickets/{ticket.id}/comments"

    mine = await client.get(url, headers=requester.headers)
    assert bodies(mine) == ["My printer is on fire", "Try turning it off"]
    assert all(item["is_internal"] is False for item in mine.json()["items"])
    for staff in (agent, manager):
        assert bodies(await client.get(url, headers=staff.headers)) == [
            "My printer is on fire",
            "Staff only: user is a VIP",
            "Try turning it off",
        ]
    # Its id answers as if it did not exist, whatever the method.
    put = await client.put(
        f"{API}/comments/{note.id}", json={"body": "x"}, headers=requester.headers
    )
    assert put.status_code == 404
    assert (
        await client.delete(f"{API}/comments/{note.id}", headers=requester.headers)
    ).status_code == 404
    denied = await audit(runtime, "comment.access", outcome="denied", actor_id=requester.id)
    assert [r.record_id for r in denied] == [str(note.id), str(note.id)]
    reads = await audit(runtime, "comment.read", record_id=str(ticket.id))
    assert [r.details["count"] for r in reads] == [2, 3, 3]
    assert [r.details["internal_included"] for r in reads] == [False, True, True]


async def test_an_end_user_asking_for_an_internal_note_gets_403_and_nothing_is_written(
    client, runtime
) -> None:
    requester = await make_user(runtime)
    ticket = await insert_ticket(runtime, requester.id)
    response = await client.post(
        f"{API}/tickets/{ticket.id}/comments",
        json={"content": "sneaky", "is_internal": True},
        headers=requester.headers,
    )
    # Refused for the caller's role (issue 11): 403, and the refusal is audited.
    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"field": "is_internal"}
    async with runtime.database.transaction() as session:
        assert list(await session.scalars(select(Comment))) == []


async def test_bad_bodies_are_422(client, runtime) -> None:
    requester = await make_user(runtime)
    ticket = await insert_ticket(runtime, requester.id)
    url = f"{API}/tickets/{ticket.id}/comments"
    secret = "Zq7PrivateWords"
    for body in (
        {"body": ""},
        {"body": "   "},
        {},
        {"body": secret, "author_id": str(requester.id)},
        {"body": secret, "is_internal": "maybe"},
    ):
        response = await client.post(url, json=body, headers=requester.headers)
        assert response.status_code == 422, body
        assert secret not in response.text  # the error names the field, never echoes the value


@pytest.mark.parametrize("settings", [{"comment_max_chars": 20}], indirect=True)
async def test_a_body_past_the_configured_length_is_422(client, runtime) -> None:
    requester = await make_user(runtime)
    ticket = await insert_ticket(runtime, requester.id)
    comment = await seed(runtime, ticket.id, requester, "short")
    long = "y" * 21
    post = await client.post(
        f"{API}/tickets/{ticket.id}/comments", json={"body": long}, headers=requester.headers
    )
    put = await client.put(
        f"{API}/comments/{comment.id}", json={"body": long}, headers=requester.headers
    )
    for response in (post, put):
        assert response.status_code == 422
        assert response.json()["error"]["details"] == {"field": "content", "max_chars": 20}


async def test_someone_elses_ticket_and_its_comments_are_404_and_audited(client, runtime) -> None:
    alice = await make_user(runtime)
    bob = await make_user(runtime)
    ticket = await insert_ticket(runtime, alice.id)
    comment = await seed(runtime, ticket.id, alice, "alice's words")
    calls = [
        client.get(f"{API}/tickets/{ticket.id}/comments", headers=bob.headers),
        client.post(
            f"{API}/tickets/{ticket.id}/comments", json={"body": "hi"}, headers=bob.headers
        ),
        client.put(f"{API}/comments/{comment.id}", json={"body": "mine now"}, headers=bob.headers),
        client.delete(f"{API}/comments/{comment.id}", headers=bob.headers),
        client.get(f"{API}/tickets/{uuid.uuid4()}/comments", headers=bob.headers),
        client.put(f"{API}/comments/{uuid.uuid4()}", json={"body": "x"}, headers=bob.headers),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 404
        assert "alice" not in response.text
    denied = await audit(runtime, "comment.access", outcome="denied", actor_id=bob.id)
    assert [r.table_name for r in denied] == ["tickets", "tickets", "comments", "comments"]
    assert (await row(runtime, Comment, comment.id)).body_enc is not None
    unauthenticated = await client.get(f"{API}/tickets/{ticket.id}/comments")
    assert unauthenticated.status_code == 401


async def test_authors_edit_their_own_comments_and_nobody_else_does(client, runtime) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    ticket = await insert_ticket(runtime, requester.id)
    comment = await seed(runtime, ticket.id, requester, "Ths has a typo")
    note = await seed(runtime, ticket.id, agent, "internal draft", internal=True)

    for someone in (agent, admin):
        refused = await client.put(
            f"{API}/comments/{comment.id}", json={"body": "rewritten"}, headers=someone.headers
        )
        assert refused.status_code == 403, someone.user.role
    edited = await client.put(
        f"{API}/comments/{comment.id}", json={"body": "This has no typo"}, headers=requester.headers
    )
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["body"] == "This has no typo" and body["edited_at"] is not None
    assert body["is_internal"] is False and body["author_id"] == str(requester.id)
    # An edit cannot turn a public comment internal (or back).
    sneaky = await client.put(
        f"{API}/comments/{comment.id}",
        json={"body": "x", "is_internal": True},
        headers=requester.headers,
    )
    assert sneaky.status_code == 422
    assert (
        await client.put(
            f"{API}/comments/{note.id}", json={"body": "final note"}, headers=agent.headers
        )
    ).status_code == 200

    assert bodies(
        await client.get(f"{API}/tickets/{ticket.id}/comments", headers=agent.headers)
    ) == ["This has no typo", "final note"]
    entries = [h for h in await history(runtime, ticket.id) if h.action == "comment_edited"]
    assert [(h.actor_id, h.changes) for h in entries] == [
        (
            requester.id,
            {"comment_id": str(comment.id), "internal": False, "body": {"changed": True}},
        ),
        (agent.id, {"comment_id": str(note.id), "internal": True, "body": {"changed": True}}),
    ]
    updates = await audit(runtime, "comment.update")
    assert [(r.outcome, r.actor_id) for r in updates] == [
        ("denied", agent.id),
        ("denied", admin.id),
        ("success", requester.id),
        ("success", agent.id),
    ]
    text = json.dumps([h.changes for h in entries]) + json.dumps([r.details for r in updates])
    assert "typo" not in text and "note" not in text.replace("internal", "")


async def test_deletion_keeps_a_tombstone_history_and_audit_but_not_the_text(
    client, runtime
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    other_agent = await make_user(runtime, Role.SUPPORT_AGENT)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    ticket = await insert_ticket(runtime, requester.id)
    mine = await seed(runtime, ticket.id, requester, "oops, my SSN is 000-00-0000")
    note = await seed(runtime, ticket.id, agent, "agent's note", internal=True)

    assert (
        await client.delete(f"{API}/comments/{note.id}", headers=other_agent.headers)
    ).status_code == 403
    assert (
        await client.delete(f"{API}/comments/{mine.id}", headers=requester.headers)
    ).status_code == 204
    assert (
        await client.delete(f"{API}/comments/{note.id}", headers=admin.headers)
    ).status_code == 204  # moderation
    assert (
        bodies(await client.get(f"{API}/tickets/{ticket.id}/comments", headers=admin.headers)) == []
    )
    again = await client.put(
        f"{API}/comments/{mine.id}", json={"body": "x"}, headers=requester.headers
    )
    assert again.status_code == 410
    assert (
        await client.delete(f"{API}/comments/{mine.id}", headers=requester.headers)
    ).status_code == 410

    stored = await row(runtime, Comment, mine.id)
    assert stored.body_enc is None and stored.deleted_at is not None
    entries = [h for h in await history(runtime, ticket.id) if h.action == "comment_deleted"]
    assert [(h.actor_id, h.changes) for h in entries] == [
        (requester.id, {"comment_id": str(mine.id), "internal": False, "moderated": False}),
        (admin.id, {"comment_id": str(note.id), "internal": True, "moderated": True}),
    ]
    deletes = await audit(runtime, "comment.delete")
    assert [(r.outcome, r.actor_id) for r in deletes] == [
        ("denied", other_agent.id),
        ("success", requester.id),
        ("success", admin.id),
    ]
    assert_absent(database_files(runtime), "000-00-0000")


async def test_a_closed_tickets_conversation_is_final_but_an_admin_may_delete(
    client, runtime
) -> None:
    requester = await make_user(runtime)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    ticket = await insert_ticket(runtime, requester.id)
    comment = await seed(runtime, ticket.id, requester, "thanks!")
    async with runtime.database.transaction() as session:
        await session.execute(update(Ticket).where(Ticket.id == ticket.id).values(status="CLOSED"))
    post = await client.post(
        f"{API}/tickets/{ticket.id}/comments", json={"body": "one more"}, headers=requester.headers
    )
    assert post.status_code == 409
    assert post.json()["error"]["details"] == {"current": "CLOSED", "allowed": []}
    assert (
        await client.put(
            f"{API}/comments/{comment.id}", json={"body": "edit"}, headers=requester.headers
        )
    ).status_code == 409
    assert (
        await client.delete(f"{API}/comments/{comment.id}", headers=requester.headers)
    ).status_code == 409
    assert (
        await client.delete(f"{API}/comments/{comment.id}", headers=admin.headers)
    ).status_code == 204
    # Still readable: a closed ticket's remaining conversation.
    assert (
        bodies(await client.get(f"{API}/tickets/{ticket.id}/comments", headers=requester.headers))
        == []
    )


async def test_a_deleted_ticket_answers_410(client, runtime) -> None:
    requester = await make_user(runtime)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    ticket = await insert_ticket(runtime, requester.id)
    comment = await seed(runtime, ticket.id, requester, "shred me")
    await ticket_commands.dispose(runtime, admin.id, Role.ADMINISTRATOR.value, ticket.id)
    for who in (requester, admin):
        assert (
            await client.get(f"{API}/tickets/{ticket.id}/comments", headers=who.headers)
        ).status_code == 410
        assert (
            await client.post(
                f"{API}/tickets/{ticket.id}/comments", json={"body": "x"}, headers=who.headers
            )
        ).status_code == 410
    assert (
        await client.put(
            f"{API}/comments/{comment.id}", json={"body": "x"}, headers=requester.headers
        )
    ).status_code == 410
    # Crypto-shredded: the ciphertext left behind has no key any more.
    assert_absent(database_files(runtime), "shred me")


async def test_the_ticket_history_hides_internal_note_entries_from_the_end_user(
    client, runtime
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket = await insert_ticket(runtime, requester.id)
    note = await seed(runtime, ticket.id, agent, "internal", internal=True)
    edited = await client.put(
        f"{API}/comments/{note.id}", json={"body": "internal, edited"}, headers=agent.headers
    )
    assert edited.status_code == 200
    staff_view = await client.get(f"{API}/tickets/{ticket.id}/history", headers=agent.headers)
    assert "comment_edited" in [e["action"] for e in staff_view.json()]
    mine = await client.get(f"{API}/tickets/{ticket.id}/history", headers=requester.headers)
    assert mine.status_code == 200
    assert [e for e in mine.json() if e["changes"].get("internal") is True] == []


async def test_without_the_workflow_a_new_comment_is_withdrawn_and_answers_503(
    client, runtime
) -> None:
    """The `client` app has no Temporal: the row committed before the update is withdrawn
    (text disposed of), so no comment exists that the timeline never heard of."""
    requester = await make_user(runtime)
    ticket = await insert_ticket(runtime, requester.id)
    response = await client.post(
        f"{API}/tickets/{ticket.id}/comments",
        json={"body": "are you there?"},
        headers=requester.headers,
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert (
        bodies(await client.get(f"{API}/tickets/{ticket.id}/comments", headers=requester.headers))
        == []
    )
    async with runtime.database.transaction() as session:
        (stored,) = list(await session.scalars(select(Comment)))
    assert stored.body_enc is None and stored.deleted_at is not None
    created = await audit(runtime, "comment.create")
    assert [r.outcome for r in created] == ["success", "failure"]
    assert created[1].details == {"ticket_id": str(ticket.id), "withdrawn": True}


async def test_comment_text_is_sealed_under_the_tickets_key(client, runtime) -> None:
    canary = f"Canary{secrets.token_hex(6)}"
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket = await insert_ticket(runtime, requester.id)
    first = await seed(runtime, ticket.id, requester, f"first {canary}a")
    second = await seed(runtime, ticket.id, agent, f"note {canary}b", internal=True)
    edited = await client.put(
        f"{API}/comments/{first.id}", json={"body": f"edited {canary}c"}, headers=requester.headers
    )
    assert edited.status_code == 200
    files = database_files(runtime)
    everything = b"".join(files.values())
    assert str(first.id).encode() in everything or first.id.hex.encode() in everything
    assert_absent(files, canary)

    # Bound to its row: swapping two comments' ciphertexts fails to decrypt, cleanly.
    async with runtime.database.transaction() as session:
        a = await session.get(Comment, first.id)
        b = await session.get(Comment, second.id)
        assert a is not None and b is not None
        a.body_enc, b.body_enc = b.body_enc, a.body_enc
    swapped = await client.get(f"{API}/tickets/{ticket.id}/comments", headers=agent.headers)
    assert swapped.status_code == 500
    assert swapped.json()["error"]["code"] == "integrity_error"
    assert canary not in swapped.text
    integrity = await audit(runtime, "comment.integrity")
    assert integrity and integrity[0].outcome == "failure"


# --- through the ticket's workflow (real worker, real Temporal dev server) --------------------


@contextlib.asynccontextmanager
async def comment_api(
    runtime: Runtime, temporal_client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    runtime.temporal = temporal_client
    app = create_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        comment_worker(temporal_client, runtime),
        httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as http,
    ):
        yield http


def mails(runtime: Runtime) -> list[dict[str, Any]]:
    path = Path(runtime.settings.email_file_path or "")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def wait_for_mail(
    runtime: Runtime, to: str, subject_part: str, count: int = 1, timeout: float = 20.0
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _ in range(int(timeout / 0.1)):
        found = [m for m in mails(runtime) if m["to"] == to and subject_part in m["subject"]]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} mail(s) '{subject_part}' to {to} not sent; got {found}")


async def post_comment(
    http: httpx.AsyncClient, actor: Actor, tid: str, body: str, **extra: Any
) -> httpx.Response:
    headers = {**actor.headers, **extra.pop("headers", {})}
    return await http.post(
        f"{API}/tickets/{tid}/comments", json={"body": body, **extra}, headers=headers
    )


temporal = pytest.mark.temporal


@temporal
async def test_a_public_agent_reply_reaches_timeline_sla_and_the_requester(
    runtime, temporal_client
) -> None:
    canary = f"Canary{secrets.token_hex(6)}"
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with comment_api(runtime, temporal_client) as http:
        created = await create_ticket(http, requester)
        tid, number = created["id"], created["number"]
        await wait_for_mail(runtime, requester.email, f"Ticket #{number} received")
        taken = await http.post(
            f"{API}/tickets/{tid}/assign", json={"agent_id": str(agent.id)}, headers=agent.headers
        )
        assert taken.status_code == 200
        await wait_for_mail(runtime, agent.email, f"Ticket #{number} assigned to you")

        reply = await post_comment(http, agent, tid, f"Have you tried {canary}?")
        assert reply.status_code == 201, reply.text
        out = reply.json()
        assert out["body"] == f"Have you tried {canary}?"
        assert out["ticket_status"] == "OPEN" and out["is_internal"] is False
        await wait_for_mail(runtime, requester.email, f"New reply on ticket #{number}")
        listed = await http.get(f"{API}/tickets/{tid}/comments", headers=requester.headers)
        assert bodies(listed) == [f"Have you tried {canary}?"]

    entries = await history(runtime, tid)
    added = [h for h in entries if h.action == "comment_added"]
    assert [(h.actor_id, h.changes) for h in added] == [
        (
            agent.id,
            {
                "comment_id": out["id"],
                "internal": False,
                "author_role": "SUPPORT_AGENT",
                "first_response": True,
            },
        )
    ]
    assert "sla.fulfilled" in [h.action for h in entries]
    stored = await row(runtime, Ticket, tid)
    assert stored.first_response_at is not None
    recorded = await audit(runtime, "ticket.comment_added", record_id=tid)
    assert [(r.actor_id, r.details["internal"]) for r in recorded] == [(agent.id, False)]
    # The text is nowhere but sealed in its row: not in the database file or WAL, not in
    # any email, not in the workflow's history (the update carries ids only).
    assert_absent(database_files(runtime), canary)
    assert canary not in json.dumps(mails(runtime))
    workflow_history = await temporal_client.get_workflow_handle(
        ticket_workflow_id(uuid.UUID(tid))
    ).fetch_history()
    assert canary not in workflow_history.to_json()


@temporal
async def test_an_internal_note_is_on_the_timeline_and_never_reaches_the_requester(
    runtime, temporal_client
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with comment_api(runtime, temporal_client) as http:
        created = await create_ticket(http, requester)
        tid, number = created["id"], created["number"]
        note = await post_comment(http, agent, tid, "VIP, be gentle", is_internal=True)
        assert note.status_code == 201, note.text
        assert note.json()["is_internal"] is True
        public = await post_comment(http, agent, tid, "Looking into it")
        assert public.status_code == 201
        # Notifications go out change by change: once the public reply's mail is there,
        # the note's turn has passed, and it sent none.
        await wait_for_mail(runtime, requester.email, f"New reply on ticket #{number}")
        assert bodies(
            await http.get(f"{API}/tickets/{tid}/comments", headers=requester.headers)
        ) == ["Looking into it"]
        assert bodies(await http.get(f"{API}/tickets/{tid}/comments", headers=agent.headers)) == [
            "VIP, be gentle",
            "Looking into it",
        ]
    replies = [m for m in mails(runtime) if "New reply" in m["subject"]]
    assert [m["to"] for m in replies] == [requester.email]
    added = [h.changes for h in await history(runtime, tid) if h.action == "comment_added"]
    assert [(c["internal"], c.get("first_response")) for c in added] == [
        (True, None),
        (False, True),
    ]


@temporal
@pytest.mark.parametrize(
    ("settings", "reopens"),
    [({}, True), ({"reopen_on_requester_reply": False}, False)],
    indirect=["settings"],
)
async def test_a_requester_reply_on_a_resolved_ticket_reopens_it(
    runtime, temporal_client, settings, reopens
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with comment_api(runtime, temporal_client) as http:
        created = await create_ticket(http, requester)
        tid, number = created["id"], created["number"]
        await http.post(
            f"{API}/tickets/{tid}/assign", json={"agent_id": str(agent.id)}, headers=agent.headers
        )
        for status in ("IN_PROGRESS", "RESOLVED"):
            assert (await set_status(http, agent, tid, status)).status_code == 200
        reply = await post_comment(http, requester, tid, "Still broken")
        assert reply.status_code == 201, reply.text
        expected = "OPEN" if reopens else "RESOLVED"
        assert reply.json()["ticket_status"] == expected
        got = await http.get(f"{API}/tickets/{tid}", headers=requester.headers)
        assert got.json()["status"] == expected
        await wait_for_mail(runtime, agent.email, f"New reply on ticket #{number}")
        if reopens:
            # The agent hears the ticket is open again; the requester who reopened it not.
            await wait_for_mail(runtime, agent.email, f"Ticket #{number} is now open")
    changes = [h for h in await history(runtime, tid) if h.action == "status_changed"]
    reopened = [h for h in changes if h.changes.get("reason") == "requester_reply"]
    assert len(reopened) == (1 if reopens else 0)
    if reopens:
        assert reopened[0].actor_id == requester.id
        assert reopened[0].changes["status"] == {"old": "RESOLVED", "new": "OPEN"}
        assert "sla.resumed" in [h.action for h in await history(runtime, tid)]
    to_requester = [m["subject"] for m in mails(runtime) if m["to"] == requester.email]
    assert not any("is now open" in s for s in to_requester)


@temporal
async def test_the_same_idempotency_key_adds_one_comment(runtime, temporal_client) -> None:
    requester = await make_user(runtime)
    async with comment_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester))["id"]
        key = {"Idempotency-Key": "reply-1"}
        first = await post_comment(http, requester, tid, "hello", headers=key)
        again = await post_comment(http, requester, tid, "hello", headers=key)
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        other = await post_comment(http, requester, tid, "different", headers=key)
        assert other.status_code == 422
        assert bodies(
            await http.get(f"{API}/tickets/{tid}/comments", headers=requester.headers)
        ) == ["hello"]
    added = [h for h in await history(runtime, tid) if h.action == "comment_added"]
    assert len(added) == 1


@temporal
async def test_a_comment_on_a_closed_ticket_is_409_and_leaves_nothing(
    runtime, temporal_client
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with comment_api(runtime, temporal_client) as http:
        tid = (await create_ticket(http, requester))["id"]
        for status in ("IN_PROGRESS", "RESOLVED", "CLOSED"):
            assert (await set_status(http, agent, tid, status)).status_code == 200
        late = await post_comment(http, agent, tid, "too late")
        assert late.status_code == 409
        # The CLOSED ticket's workflow has completed (its last notifications are out).
        handle = temporal_client.get_workflow_handle(ticket_workflow_id(uuid.UUID(tid)))
        async with asyncio.timeout(60):
            await handle.result()
    async with runtime.database.transaction() as session:
        assert list(await session.scalars(select(Comment))) == []


@temporal
async def test_over_socketio_an_end_user_hears_public_replies_and_never_internal_notes(
    runtime, temporal_client
) -> None:
    """Real uvicorn, real python-socketio clients, the REST calls they would make: the
    requester's socket (in the ticket room and their own room) receives the public reply's
    event only; the agent's socket receives both."""
    from api.app import create_asgi_app
    from tests.support.comm import connect, serve

    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    runtime.temporal = temporal_client
    asgi = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    async with (
        serve(asgi, asgi.other_asgi_app) as server,
        comment_worker(temporal_client, runtime),
        httpx.AsyncClient(base_url=server.url, timeout=60) as http,
    ):
        tid = (await create_ticket(http, requester))["id"]
        requester_socket = await connect(server.url, requester.token, ["comment.added"])
        agent_socket = await connect(server.url, agent.token, ["comment.added"])
        try:
            for socket in (requester_socket, agent_socket):
                joined = await socket.client.call("join_ticket", {"ticket_id": tid}, timeout=5)
                assert joined["ok"] is True
            note = await post_comment(http, agent, tid, "internal only", is_internal=True)
            public = await post_comment(http, agent, tid, "public reply")
            assert note.status_code == public.status_code == 201
            note_id, public_id = note.json()["id"], public.json()["id"]
            heard = await agent_socket.wait_for(
                "comment.added", lambda p: p["comment_id"] == note_id, timeout=20
            )
            assert heard["internal"] is True
            await agent_socket.wait_for(
                "comment.added", lambda p: p["comment_id"] == public_id, timeout=20
            )
            got = await requester_socket.wait_for("comment.added", timeout=20)
            assert got["comment_id"] == public_id and got["internal"] is False
            assert "public reply" not in json.dumps(got)  # ids only: fetch the text over REST
            await asyncio.sleep(0.5)
            assert [p["comment_id"] for _, p in requester_socket.events] == [public_id]
        finally:
            await requester_socket.close()
            await agent_socket.close()


def test_ticket_workflow_has_comments_wired() -> None:
    """The update the API sends by name is one the workflow definition registers, with a
    validator (so a refused comment never enters history)."""
    from temporalio.workflow import _Definition

    from workflows.ticket_comments import ADD_COMMENT

    update = _Definition.must_from_class(TicketWorkflow).updates[ADD_COMMENT]
    assert update.validator is not None
