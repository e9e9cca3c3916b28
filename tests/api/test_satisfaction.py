"""Customer satisfaction: a survey per resolution, its PHI-free email, one answer (by
token or by the signed-in requester), withdrawn by a reopen, counted by analytics."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from helpdesk.runtime import Runtime
from helpdesk.services import satisfaction
from models.enums import Role
from models.satisfaction import SatisfactionSurvey
from tests.conftest import free_port
from tests.support.analytics_timeline import START, Timeline, install_clock, rollup_snapshot
from tests.support.auth import audit_rows
from tests.support.factories import Actor, make_user

K1 = pytest.mark.parametrize("settings", [{"analytics_min_cell_size": 1}], indirect=True)
CANARY = "CANARY-csat-5d1e"
URL = "/api/v1/tickets/{}/satisfaction"


@pytest.fixture
async def people(runtime: Runtime) -> dict[str, Actor]:
    return {
        "requester": await make_user(runtime, Role.END_USER),
        "stranger": await make_user(runtime, Role.END_USER),
        "agent": await make_user(runtime, Role.SUPPORT_AGENT),
        "manager": await make_user(runtime, Role.MANAGER),
    }


@pytest.fixture
def line(runtime: Runtime, people: dict[str, Actor], monkeypatch: pytest.MonkeyPatch) -> Timeline:
    return Timeline(runtime, install_clock(monkeypatch), people["requester"].id, people["agent"].id)


async def resolved_ticket(line: Timeline) -> uuid.UUID:
    t = await line.create()
    await line.reply(t)
    await line.set_status(t, "IN_PROGRESS")
    line.clock.advance(hours=1)
    await line.set_status(t, "RESOLVED")
    return t


def survey_tokens(runtime: Runtime, address: str) -> list[str]:
    mails = [m for m in runtime.email.messages() if m["to"] == address]
    return [re.search(r"#token=([\w-]+)", m["body"]).group(1) for m in mails]  # type: ignore[union-attr]


@K1
async def test_the_survey_loop_by_token(
    client: httpx.AsyncClient, runtime: Runtime, people: dict[str, Actor], line: Timeline
) -> None:
    t = await resolved_ticket(line)
    assert await satisfaction.send_due(runtime) == 1
    assert await satisfaction.send_due(runtime) == 0  # once
    mails = runtime.email.messages()
    (mail,) = [m for m in mails if m["to"] == people["requester"].email]
    assert "canary title" not in mail["body"] and "Test Person" not in mail["body"]
    (token,) = survey_tokens(runtime, people["requester"].email)

    r = await client.post(URL.format(t), json={"rating": 5, "comment": CANARY, "token": token})
    assert r.status_code == 201, r.text
    again = await client.post(URL.format(t), json={"rating": 1, "token": token})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"

    staff_view = await client.get(URL.format(t), headers=people["agent"].headers)
    assert staff_view.json()[0]["rating"] == 5 and staff_view.json()[0]["comment"] == CANARY
    assert (await client.get(URL.format(t), headers=people["stranger"].headers)).status_code == 404
    db = Path(runtime.settings.database_url.split("///", 1)[1]).read_bytes()
    assert CANARY.encode() not in db
    assert len(await audit_rows(runtime, "ticket.satisfaction.answer")) == 1

    period = {
        "from": (START - timedelta(days=1)).isoformat(),
        "to": (START + timedelta(days=300)).isoformat(),
    }
    r = await client.get(
        "/api/v1/analytics/overview", params=period, headers=people["manager"].headers
    )
    csat = r.json()["measures"]["csat"]
    assert csat == {"sent": 1, "answered": 1, "score": 1.0, "response_rate": 1.0}
    kept = await rollup_snapshot(runtime)
    from helpdesk.analytics.rebuild import rebuild

    async with runtime.database.transaction() as session:
        await rebuild(session)
    assert await rollup_snapshot(runtime) == kept


async def test_a_reopen_withdraws_an_unanswered_survey_and_the_next_resolution_asks_again(
    client: httpx.AsyncClient, runtime: Runtime, people: dict[str, Actor], line: Timeline
) -> None:
    t = await resolved_ticket(line)
    await satisfaction.send_due(runtime)
    await line.set_status(t, "OPEN")  # the requester reopens
    (first,) = survey_tokens(runtime, people["requester"].email)
    r = await client.post(URL.format(t), json={"rating": 4, "token": first})
    assert r.status_code == 409
    await line.set_status(t, "IN_PROGRESS")
    await line.set_status(t, "RESOLVED")
    await satisfaction.send_due(runtime)
    second = survey_tokens(runtime, people["requester"].email)[1]
    r = await client.post(URL.format(t), json={"rating": 2, "token": second})
    assert r.status_code == 201, r.text
    assert r.json()["resolution"] == 2
    async with runtime.database.read() as session:
        rows = list(await session.scalars(select(SatisfactionSurvey)))
    assert sorted((s.resolution, s.cancelled_at is not None) for s in rows) == [
        (1, True),
        (2, False),
    ]


async def test_who_may_answer_and_bad_answers(
    client: httpx.AsyncClient, runtime: Runtime, people: dict[str, Actor], line: Timeline
) -> None:
    t = await resolved_ticket(line)
    await satisfaction.send_due(runtime)
    for bad in ({"rating": 0}, {"rating": 6}, {"rating": "five"}, {"rating": 3, "extra": 1}):
        r = await client.post(URL.format(t), json=bad, headers=people["requester"].headers)
        assert r.status_code == 422, bad
    assert (await client.post(URL.format(t), json={"rating": 3})).status_code == 401
    for actor in (people["stranger"], people["agent"]):
        r = await client.post(URL.format(t), json={"rating": 3}, headers=actor.headers)
        assert r.status_code == 404
    r = await client.post(URL.format(t), json={"rating": 3, "token": "x" * 43})
    assert r.status_code == 404  # a wrong token learns nothing
    r = await client.post(URL.format(t), json={"rating": 3}, headers=people["requester"].headers)
    assert r.status_code == 201, r.text


async def test_an_expired_survey_answers_410(
    client: httpx.AsyncClient, runtime: Runtime, people: dict[str, Actor], line: Timeline
) -> None:
    t = await resolved_ticket(line)
    await satisfaction.send_due(runtime)
    line.clock.advance(hours=runtime.settings.csat_survey_life_hours + 1)
    r = await client.post(URL.format(t), json={"rating": 3}, headers=people["requester"].headers)
    assert r.status_code == 410


async def test_an_answer_is_pushed_to_the_ticket_s_staff_room_only(
    runtime: Runtime, temporal_client: object, people: dict[str, Actor], line: Timeline
) -> None:
    from api.app import create_asgi_app
    from tests.support.comm import connect, serve

    t = await resolved_ticket(line)
    await satisfaction.send_due(runtime)
    asgi = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    async with serve(asgi, asgi.other_asgi_app) as running:
        events = ["ticket.satisfaction"]
        agent = await connect(running.url, people["agent"].token, events)
        requester = await connect(running.url, people["requester"].token, events)
        try:
            joined = await agent.client.call("join_ticket", {"ticket_id": str(t)}, timeout=5)
            assert joined["ok"] is True
            await requester.client.call("join_ticket", {"ticket_id": str(t)}, timeout=5)
            async with httpx.AsyncClient(base_url=running.url) as http:
                r = await http.post(
                    URL.format(t), json={"rating": 4}, headers=people["requester"].headers
                )
                assert r.status_code == 201, r.text
            payload = await agent.wait_for("ticket.satisfaction")
            assert payload == {"ticket_id": str(t), "rating": 4, "resolution": 1}
            await asyncio.sleep(0.3)
            assert requester.names() == []
        finally:
            await agent.close()
            await requester.close()


@pytest.mark.parametrize(
    "settings",
    [{"email_backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": free_port()}],
    indirect=True,
)
async def test_a_survey_the_mail_server_refused_stays_unsent_for_the_next_round(
    runtime: Runtime, people: dict[str, Actor], line: Timeline
) -> None:
    from helpdesk.email import EmailTransientError
    from models.analytics import TicketFact

    t = await resolved_ticket(line)
    with pytest.raises(EmailTransientError):
        await satisfaction.send_due(runtime)
    async with runtime.database.read() as session:
        (survey,) = list(await session.scalars(select(SatisfactionSurvey)))
        fact = await session.get(TicketFact, t)
    assert survey.sent_at is None and survey.cancelled_at is None
    assert fact is not None and fact.csat_sent_at is None
    kept = await rollup_snapshot(runtime)
    from helpdesk.analytics.rebuild import rebuild

    async with runtime.database.transaction() as session:
        await rebuild(session)
    assert await rollup_snapshot(runtime) == kept
