"""Request tracing when tracing is on (`helpdesk.tracing`).

FastAPI (0.16x) opens a server span per request itself once a tracer provider is set; where
it does not (older versions), this middleware opens one, named by the route template (never
the raw path, which holds ids) and continuing a caller's W3C `traceparent`. Either way it puts
the request id on the server span and in the context's baggage, so the Temporal calls the
request makes, and the workflow handlers and activities they reach, carry it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import context, propagate, trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import route_template
from helpdesk import tracing
from helpdesk.context import current_context


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        request_id = current_context().request_id
        outer = trace.get_current_span()
        token = None
        if not outer.is_recording():  # no framework span: continue the caller's trace
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            token = context.attach(propagate.extract(carrier))
        baggage_token = tracing.with_request_id(request_id)
        try:
            with self._span(scope, outer) as span:
                span.set_attribute(tracing.REQUEST_ID, request_id)

                async def traced_send(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        span.set_attribute("http.response.status_code", int(message["status"]))
                    await send(message)

                await self.app(scope, receive, traced_send)
        finally:
            context.detach(baggage_token)  # type: ignore[arg-type]
            if token is not None:
                context.detach(token)

    @contextlib.contextmanager
    def _span(self, scope: Scope, outer: trace.Span) -> Iterator[trace.Span]:
        if outer.is_recording():
            yield outer
            return
        method = scope.get("method", "GET")
        route = route_template(scope)
        tracer = trace.get_tracer("helpdesk.api")
        with tracer.start_as_current_span(f"{method} {route}", kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("http.route", route)
            yield span
