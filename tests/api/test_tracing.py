"""Traces: an HTTP request's span, the Temporal calls it makes, the workflow's handlers and
the activities they run share one trace, and each span carries the HTTP request id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from helpdesk import tracing
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from helpdesk.temporal import connect
from models.enums import Role
from tests.support.factories import make_user
from tests.support.tickets import ticket_api


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    installed = tracing.install(provider)
    if installed is not provider:  # a provider from an earlier test: feed it too
        installed.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.uninstall()


def test_tracing_is_off_by_default(settings: Settings) -> None:
    assert settings.otel_exporter is None
    assert tracing.configure(settings) is False
    assert tracing.client_interceptors() == []


async def test_a_request_id_reaches_the_workflow_and_activity_spans(
    spans: InMemorySpanExporter, runtime: Runtime, settings: Settings, temporal_server: str
) -> None:
    client = await connect(settings, address=temporal_server)
    requester = await make_user(runtime, Role.END_USER)
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    async with ticket_api(runtime, client) as http:
        response = await http.post(
            "/api/v1/tickets",
            json={"title": "Printer on fire", "description": "Smoke from tray 2"},
            headers={**requester.headers, "X-Request-ID": request_id},
        )
        assert response.status_code == 201, response.text
    finished = spans.get_finished_spans()
    server = [
        s
        for s in finished
        if s.kind is SpanKind.SERVER and (s.attributes or {}).get("http.route") == "/api/v1/tickets"
    ]
    assert len(server) == 1, [s.name for s in finished]
    trace_id = server[0].context.trace_id
    attributes = server[0].attributes or {}
    assert attributes["helpdesk.request_id"] == request_id
    assert attributes["http.response.status_code"] == 201
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    assert any(n.startswith("RunWorkflow:TicketWorkflow") for n in names), names
    assert any(n.startswith("RunActivity:") for n in names), names
    for span in in_trace:
        assert (span.attributes or {}).get("helpdesk.request_id") == request_id, span.name
    # Names and attributes, never the ticket's text.
    for span in finished:
        assert "Printer" not in span.name and "Printer" not in str(span.attributes)
