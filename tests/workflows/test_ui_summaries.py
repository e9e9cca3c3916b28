"""Managers in the Temporal UI (issue 11): summaries are PHI-free by design, so they travel
and are stored as plaintext UI text, readable without the codec endpoint; everything else
stays encrypted, and the worker refuses plaintext it did not send itself."""

from __future__ import annotations

import json

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from helpdesk.temporal import (
    ENCODING,
    REFUSED_ENCODING,
    UI_TEXT,
    codec,
    data_converter,
    ticket_workflow_id,
    ui_text,
)
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api


def _text(payload: Payload) -> str:
    assert payload.metadata.get("encoding") == b"json/plain", payload.metadata
    value = json.loads(payload.data)
    assert isinstance(value, str)
    return value


async def test_the_codec_keeps_ui_text_readable_and_refuses_plaintext(settings: Settings) -> None:
    converter = data_converter(settings)
    summary, secret = converter.payload_converter.to_payloads([ui_text("Ticket #7"), "Ticket #7"])
    strict = codec(settings)
    encoded = await strict.encode([summary, secret])
    assert _text(encoded[0]) == "Ticket #7" and encoded[0].metadata[UI_TEXT] == b"1"
    assert encoded[1].metadata["encoding"] == ENCODING  # a plain str is not UI text
    # Inbound, a plaintext payload (the CLI's --input) is refused; UI text and ciphertext pass.
    decoded = await strict.decode([encoded[0], encoded[1], secret])
    assert _text(decoded[0]) == "Ticket #7" and _text(decoded[1]) == "Ticket #7"
    assert decoded[2].metadata["encoding"] == REFUSED_ENCODING and decoded[2].data == b""
    # Marked as UI text but not a string (a forged command body): refused too.
    forged = Payload(metadata={"encoding": b"json/plain", UI_TEXT: b"1"}, data=b'{"status": 1}')
    assert (await strict.decode([forged]))[0].metadata["encoding"] == REFUSED_ENCODING
    # The codec endpoint (for the UI) decodes leniently: it is sent the summaries too.
    assert (await codec(settings, strict=False).decode([secret]))[0] == secret


@pytest.mark.temporal
async def test_summaries_are_stored_as_text_and_everything_else_encrypted(
    runtime: Runtime, temporal_client: Client, temporal_server: str, settings: Settings
) -> None:
    requester = await make_user(runtime, Role.END_USER)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    # What the Temporal UI reads: through a client WITHOUT our codec.
    plain = await Client.connect(temporal_server, namespace=settings.temporal_namespace)
    async with ticket_api(runtime, temporal_client) as http:
        ticket = await create_ticket(http, requester, priority="HIGH")
        assert (await set_status(http, agent, ticket["id"], "IN_PROGRESS")).status_code == 200
        handle = plain.get_workflow_handle(ticket_workflow_id(ticket["id"]))
        # The UI's current details (its metadata query) read as text too.
        metadata = await handle.query("__temporal_workflow_metadata")
        assert "IN_PROGRESS" in metadata.current_details
    history = await handle.fetch_history()
    started = history.events[0]
    assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    assert _text(started.user_metadata.summary) == f"Ticket #{ticket['number']} · HIGH · OPEN"
    activities = [
        _text(e.user_metadata.summary)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert "Status OPEN → IN_PROGRESS" in activities
    timers = [
        _text(e.user_metadata.summary)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    assert timers and all(t.startswith(("SLA", "Auto-close")) for t in timers)
    # Inputs and results stay encrypted.
    assert (
        started.workflow_execution_started_event_attributes.input.payloads[0].metadata["encoding"]
        == ENCODING
    )
