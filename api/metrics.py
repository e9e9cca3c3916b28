"""HTTP metrics and the `/metrics` endpoint of the API.

Requests are labelled by their route *template* (`/api/v1/tickets/{ticket_id}`), never by
the path a caller sent, so no id reaches a label; a request no route matched is counted as
`unmatched`. `/metrics` answers only callers inside `metrics_allowed_networks` (loopback by
default; the scraper's network in a deployment) and 404 to everyone else, like a route that
does not exist.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helpdesk import errors, metrics

router = APIRouter()

# Requests whose own metrics would only measure the scraper.
_UNCOUNTED = frozenset({"/metrics"})


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNCOUNTED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding
        elapsed: float | None = None

        async def timed_send(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status = int(message["status"])
                elapsed = time.perf_counter() - started
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            template = route_template(scope)
            method = scope.get("method", "GET")
            metrics.HTTP_REQUESTS.labels(method=method, route=template, status=str(status)).inc()
            metrics.HTTP_DURATION.labels(method=method, route=template).observe(
                elapsed if elapsed is not None else time.perf_counter() - started
            )


class RouteTemplates:
    """Maps a request path to its route template, from the OpenAPI document's paths (the
    full templates, prefixes included, whatever FastAPI's routing internals look like) and
    the few routes kept out of the schema. Literal segments win over parameters
    (`/users/profile` before `/users/{user_id}`), as the router orders them."""

    EXTRA = ("/metrics", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect")

    def __init__(self, paths: list[str]) -> None:
        def specificity(path: str) -> tuple[int, int]:
            return (path.count("{"), -len(path))

        self._compiled = [
            (compile_path(path)[0], path) for path in sorted(set(paths), key=specificity)
        ]

    def template(self, path: str) -> str:
        for regex, template in self._compiled:
            if regex.match(path):
                return template
        return "unmatched"


def _templates(scope: Scope) -> RouteTemplates:
    """The app's templates, built on its first request (the schema is complete by then)."""
    app: Any = scope.get("app")
    templates: RouteTemplates | None = getattr(app.state, "route_templates", None)
    if templates is None:
        paths = list(app.openapi().get("paths", {})) + list(RouteTemplates.EXTRA)
        if app.openapi_url:
            paths.append(app.openapi_url)
        templates = app.state.route_templates = RouteTemplates(paths)
    return templates


def warm(app: Any) -> None:
    """Build the route templates (and with them the OpenAPI document, ~0.7 s) at start-up,
    not inside the first request."""
    _templates({"app": app})


def route_template(scope: Scope) -> str:
    """The route template a request's path matches, or `unmatched`."""
    return _templates(scope).template(scope["path"])


def _allowed(request: Request) -> bool:
    networks = request.app.state.metrics_networks
    address = getattr(request.state, "client_ip", None) or (
        request.client.host if request.client else None
    )
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text exposition of this process's metrics (allowed networks only)."""
    if not _allowed(request):
        raise errors.NotFound("not found")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
