"""OpenTelemetry traces across API -> Temporal -> workflow -> activities (off by default).

`HELPDESK_OTEL_EXPORTER=otlp` sends spans over OTLP/HTTP (`HELPDESK_OTEL_ENDPOINT`, or the
standard `OTEL_EXPORTER_OTLP_*` variables), `azure` to Application Insights through
`azure-monitor-opentelemetry` (`APPLICATIONINSIGHTS_CONNECTION_STRING`; install the package
beside the project), `console` prints them. The Temporal client then carries the SDK's
`TracingInterceptor`, so a workflow's and its activities' spans join the HTTP request's trace,
and the request id travels as W3C baggage: `RequestIdSpanProcessor` writes it on every span
as `helpdesk.request_id`, the workflow's and activities' spans included.

Spans carry ids, names of workflows, updates and activities, routes and statuses: never a
payload (they stay encrypted by the codec) and never PHI.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import baggage, context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

from helpdesk.settings import Settings

log = logging.getLogger("helpdesk.tracing")

REQUEST_ID = "helpdesk.request_id"
_provider: TracerProvider | None = None


class RequestIdSpanProcessor(SpanProcessor):
    """Copies the request id from the span's parent context (baggage) onto the span."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        request_id = baggage.get_baggage(REQUEST_ID, parent_context)
        if request_id:
            span.set_attribute(REQUEST_ID, str(request_id))

    def on_end(self, span: ReadableSpan) -> None:
        return None


def install(provider: TracerProvider) -> TracerProvider:
    """Make `provider` this process's tracer provider (once: OpenTelemetry allows one)."""
    global _provider
    if _provider is None:
        provider.add_span_processor(RequestIdSpanProcessor())
        trace.set_tracer_provider(provider)
        _provider = provider
    return _provider


def uninstall() -> None:
    """Stop adding spans from this process's code (tests; OpenTelemetry keeps its global
    provider, which then has no interceptor or middleware feeding it)."""
    global _provider
    _provider = None


def enabled() -> bool:
    return _provider is not None


def configure(settings: Settings) -> bool:
    """Install the exporter the settings name, once per process; True when tracing is on."""
    if _provider is not None or not settings.otel_exporter:
        return enabled()
    resource = Resource.create(
        {"service.name": settings.otel_service_name, "deployment.environment": settings.environment}
    )
    if settings.otel_exporter == "azure":
        try:  # lazy: an optional package (not a dependency), needed only for this exporter
            from azure.monitor.opentelemetry import configure_azure_monitor
        except ImportError as exc:
            raise RuntimeError(
                "HELPDESK_OTEL_EXPORTER=azure needs the azure-monitor-opentelemetry package"
            ) from exc
        configure_azure_monitor(resource=resource)
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            install(provider)
        return enabled()
    provider = TracerProvider(resource=resource)
    exporter: Any
    if settings.otel_exporter == "otlp":
        # Lazy: the OTLP exporter (protobuf, requests) loads only when configured.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint or None)
    else:
        exporter = ConsoleSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    log.info("traces exported (%s)", settings.otel_exporter)
    return True


def client_interceptors() -> list[Any]:
    """The Temporal client's interceptors: the tracing one when tracing is on."""
    if not enabled():
        return []
    return [TracingInterceptor()]


def with_request_id(request_id: str) -> object:
    """Attach the request id as baggage to the current context; returns the token to
    detach with `context.detach`."""
    return context.attach(baggage.set_baggage(REQUEST_ID, request_id))
