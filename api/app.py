"""The ASGI application factory: REST under /api/v1, Socket.IO at /socket.io."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import metrics as http_metrics
from api.cors import JsonCorsMiddleware
from api.errors import install_error_handlers
from api.load_shed import LoadShedMiddleware
from api.middleware import RequestContextMiddleware
from api.openapi import install_openapi
from api.routes import (
    analytics,
    attachments,
    auth,
    categories,
    codec,
    comments,
    health,
    link_pages,
    satisfaction,
    sla,
    ticket_queries,
    tickets,
    users,
)
from api.socketio import mount_socketio
from api.tracing import TracingMiddleware
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services.sessions import prepare_runtime
from helpdesk.settings import Settings, get_settings
from helpdesk.temporal import connect
from workers.worker import run_worker_in_background

log = logging.getLogger("helpdesk.api")

API_PREFIX = "/api/v1"

# Routes reachable without a token. Everything else needs one (see tests/test_route_roles).
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),  # allowed networks only (api.metrics)
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", f"{API_PREFIX}/openapi.json"),
        ("POST", f"{API_PREFIX}/auth/register"),
        ("POST", f"{API_PREFIX}/auth/login"),
        ("POST", f"{API_PREFIX}/auth/refresh"),
        ("POST", f"{API_PREFIX}/auth/forgot-password"),
        ("POST", f"{API_PREFIX}/auth/reset-password"),
        ("POST", f"{API_PREFIX}/auth/verify-email"),
        ("POST", f"{API_PREFIX}/auth/resend-verification"),
        # The pages emailed links open when no portal is configured (api.routes.link_pages).
        ("GET", "/verify-email"),
        ("GET", "/reset-password"),
        # With the survey email's token instead of a sign-in (helpdesk.services.satisfaction).
        ("POST", f"{API_PREFIX}/tickets/{{ticket_id}}/satisfaction"),
    }
)


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    temporal_client: Any = None,
    run_worker: bool | None = None,
) -> FastAPI:
    """Build the application.

    `runtime` and `temporal_client` may be given (tests share them); otherwise they are
    built from the settings at start-up. `run_worker` hosts the Temporal worker in-process
    (default: the `run_worker_in_api` setting).
    """
    settings = settings or (runtime.settings if runtime else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            rt = runtime or build_runtime(settings)
            if runtime is None:
                stack.push_async_callback(rt.close)
            prepare_runtime(rt)
            app.state.runtime = rt
            client = temporal_client
            if client is None and rt.temporal is None:
                client = await connect(settings)
            if client is not None:
                rt.temporal = client
            hosted = settings.run_worker_in_api if run_worker is None else run_worker
            if hosted:
                await stack.enter_async_context(run_worker_in_background(rt))
            if settings.metrics_enabled:
                http_metrics.warm(app)
            yield

    app = FastAPI(
        title="Help desk API",
        version="1.0.0",
        description=(
            "HIPAA-minded help desk. Every ticket is a durable Temporal workflow; commands "
            "go through the workflow, reads come from the database."
        ),
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    if runtime is not None:
        app.state.runtime = prepare_runtime(runtime)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            JsonCorsMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Request-ID",
                "X-Namespace",
            ],
        )
    # Inside the request context (it reads the request id), outside everything else.
    app.add_middleware(TracingMiddleware)
    # Before the body is read, the caller authenticated or the database asked: a refused
    # ticket creation or command costs next to nothing (api.load_shed).
    app.add_middleware(LoadShedMiddleware, prefix=API_PREFIX)
    app.add_middleware(
        RequestContextMiddleware,
        trusted_proxies=settings.trusted_proxies,
        hsts=settings.tls_certfile is not None,
    )
    app.state.metrics_networks = [
        ipaddress.ip_network(n, strict=False) for n in settings.metrics_allowed_networks
    ]
    app.include_router(health.router)
    if settings.metrics_enabled:
        app.include_router(http_metrics.router)
    app.include_router(link_pages.router)
    app.include_router(auth.router, prefix=f"{API_PREFIX}/auth", tags=["auth"])
    app.include_router(users.router, prefix=f"{API_PREFIX}/users", tags=["users"])
    app.include_router(categories.router, prefix=f"{API_PREFIX}/categories", tags=["categories"])
    app.include_router(ticket_queries.router, prefix=API_PREFIX, tags=["tickets"])
    app.include_router(tickets.router, prefix=API_PREFIX, tags=["tickets"])
    app.include_router(comments.router, prefix=API_PREFIX, tags=["comments"])
    app.include_router(attachments.router, prefix=API_PREFIX, tags=["attachments"])
    app.include_router(sla.router, prefix=API_PREFIX, tags=["sla"])
    app.include_router(analytics.router, prefix=API_PREFIX, tags=["analytics"])
    app.include_router(satisfaction.router, prefix=API_PREFIX, tags=["satisfaction"])
    app.include_router(codec.router, prefix=f"{API_PREFIX}/temporal-codec", tags=["temporal"])
    # Outermost: the Temporal UI (another origin) preflights its codec calls.
    app.add_middleware(
        codec.CodecCorsMiddleware,
        origins=codec.ui_origins(settings),
        path_prefix=f"{API_PREFIX}/temporal-codec",
    )
    # Outermost of all: counts every answer, the middlewares' own refusals included.
    if settings.metrics_enabled:
        app.add_middleware(http_metrics.MetricsMiddleware)
    install_openapi(app)
    return app


def create_asgi_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    temporal_client: Any = None,
    run_worker: bool | None = None,
) -> Any:
    """What uvicorn serves: the FastAPI app with Socket.IO mounted at /socket.io
    (communication area). Same arguments as `create_app`; tests of REST routes alone
    keep using `create_app`."""
    settings = settings or (runtime.settings if runtime else get_settings())
    app = create_app(
        settings, runtime=runtime, temporal_client=temporal_client, run_worker=run_worker
    )
    return mount_socketio(app, settings)
