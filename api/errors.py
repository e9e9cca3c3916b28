"""One JSON error shape for every error, and the table mapping domain errors to statuses.

{"error": {"code": "...", "message": "...", "details": {...}, "request_id": "..."}}
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from helpdesk import errors
from helpdesk.context import current_context

log = logging.getLogger("helpdesk.api")

STATUS_BY_ERROR: dict[type[errors.DomainError], int] = {
    errors.NotFound: 404,
    errors.Gone: 410,
    errors.InvalidTransition: 409,
    errors.Conflict: 409,
    errors.MfaRequired: 403,
    errors.PermissionDenied: 403,
    errors.AuthenticationFailed: 401,
    errors.RateLimited: 429,
    errors.ValidationFailed: 422,
    errors.PayloadTooLarge: 413,
    errors.Unavailable: 503,
    errors.DataIntegrityError: 500,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "authentication_failed",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


def status_for(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details if details is not None else {},
            "request_id": current_context().request_id,
        }
    }


def _safe_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Echo where and why, never the submitted value (it may be PHI or a password).
    return [
        {"loc": list(err.get("loc", ())), "type": err.get("type"), "msg": err.get("msg")}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.DomainError)
    async def _domain(request: Request, exc: errors.DomainError) -> JSONResponse:
        status = status_for(exc)
        if exc.audit is not None:
            runtime = request.app.state.runtime
            await runtime.audit.record_separately(runtime.database, **exc.audit)
        headers: dict[str, str] = {}
        if isinstance(exc, errors.RateLimited | errors.Unavailable):
            headers["Retry-After"] = str(exc.retry_after)
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body(
                "validation_failed",
                "the request is not valid",
                {"errors": _safe_validation_errors(exc)},
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # Retryable, and the request did nothing durable: SQLite's "database is locked"
        # past its busy timeout (OperationalError), or a PostgreSQL connection that died
        # under a statement (SQLAlchemy has already thrown the pool's connections away, so
        # a retry gets a fresh one). Any other database error is unexpected.
        if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
            return await _unexpected(request, exc)
        log.warning(
            "database unavailable on %s %s: %s",
            request.method,
            request.scope.get("route_path", "?"),
            type(exc.orig).__name__,
        )
        return JSONResponse(
            error_body("unavailable", "the database is busy; retry shortly"),
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection stayed out for the whole checkout timeout: busy, retry.
        log.warning(
            "database pool exhausted on %s %s", request.method, request.scope.get("route_path", "?")
        )
        return JSONResponse(
            error_body("unavailable", "the database is busy; retry shortly"),
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its type only: exception text may carry PHI. No stack trace leaves.
        where = "".join(traceback.format_tb(exc.__traceback__)[-4:])
        log.error(
            "unhandled %s on %s %s\n%s",
            type(exc).__name__,
            request.method,
            request.scope.get("route_path", "?"),
            where,
        )
        return JSONResponse(
            error_body("internal_error", "an internal error occurred"), status_code=500
        )
