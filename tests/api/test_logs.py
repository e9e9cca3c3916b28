"""Production logs: one JSON object per line with the request context, and no PHI in a
full ticket lifecycle's logs."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from helpdesk import logs
from helpdesk.context import RequestContext, set_context
from helpdesk.runtime import Runtime
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record of the process, formatted as production formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    helpdesk_logger = logging.getLogger("helpdesk")
    # The test's own HTTP client logs the URLs it calls (query strings included): that is
    # the test talking, not the product.
    test_client = logging.getLogger("httpx")
    old_root, old_helpdesk, old_client = root.level, helpdesk_logger.level, test_client.level
    test_client.setLevel(logging.WARNING)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    helpdesk_logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_root)
        helpdesk_logger.setLevel(old_helpdesk)
        test_client.setLevel(old_client)


def test_a_line_is_one_json_object_with_the_request_context(json_log: io.StringIO) -> None:
    set_context(RequestContext(request_id="req-123"))
    ticket = uuid.uuid4()
    log = logging.getLogger("helpdesk.test")
    log.info("ticket changed", extra={"ticket_id": ticket, "note": "free text is dropped"})
    try:
        raise ValueError("Jane Doe's diagnosis")  # an exception message may carry PHI
    except ValueError:
        log.exception("write failed")
    first, second = (json.loads(line) for line in json_log.getvalue().splitlines())
    assert first["event"] == "ticket changed"
    assert first["level"] == "INFO" and first["logger"] == "helpdesk.test"
    assert first["request_id"] == "req-123"
    assert first["ticket_id"] == str(ticket)
    assert "note" not in first
    assert first["time"].endswith("+00:00")
    assert second["error"] == "ValueError"
    assert "Jane Doe" not in json_log.getvalue()


def test_settings_choose_json_in_production(settings: object) -> None:
    from helpdesk.settings import Settings

    assert isinstance(settings, Settings)
    assert settings.effective_log_format == "text"
    assert settings.model_copy(update={"log_format": "json"}).effective_log_format == "json"


async def test_a_ticket_lifecycle_logs_no_phi(
    json_log: io.StringIO, runtime: Runtime, temporal_client: object
) -> None:
    canary = f"Canary{uuid.uuid4().hex[:10]}"
    requester = await make_user(
        runtime, Role.END_USER, email=f"{canary.lower()}@patients.example", full_name=canary
    )
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    async with ticket_api(runtime, temporal_client) as http:  # type: ignore[arg-type]
        ticket = await create_ticket(
            http, requester, title=f"{canary} title", description=f"{canary} history of illness"
        )
        tid = ticket["id"]
        assigned = await http.post(
            f"/api/v1/tickets/{tid}/assign", json={"agent_id": str(agent.id)}, headers=agent.headers
        )
        assert assigned.status_code == 200, assigned.text
        for field in ("content", "body"):  # the seed's name, or the older one
            reply = await http.post(
                f"/api/v1/tickets/{tid}/comments",
                json={field: f"{canary} reply", "is_internal": False},
                headers=agent.headers,
            )
            if reply.status_code != 422:
                break
        assert reply.status_code == 201, reply.text
        for status in ("IN_PROGRESS", "RESOLVED"):
            moved = await set_status(http, agent, tid, status)
            assert moved.status_code == 200, moved.text
        searched = await http.get("/api/v1/tickets", params={"q": canary}, headers=agent.headers)
        assert searched.status_code == 200
    text = json_log.getvalue()
    assert text, "the lifecycle logged nothing: the check would prove nothing"
    for line in text.splitlines():
        entry = json.loads(line)
        assert {"time", "level", "logger", "event", "request_id"} <= set(entry)
    assert canary not in text and canary.lower() not in text
