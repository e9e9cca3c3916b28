"""The OpenAPI document says what the API really answers: the bearer scheme (the Authorize
button of /docs) on every protected operation, and each error status an operation can send,
all in the one JSON error shape of `api.errors` (the 422 included: FastAPI's default
`{"detail": [...]}` is never sent, so it is never documented).

Generic statuses follow from the operation itself (a token → 401/403, a path parameter →
404, parameters or a body → 422, the database → 503); the rest, per operation, come from
`EXTRA_ERRORS` below. A route's own `responses=` keep their descriptions and get the shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/api/v1"
SCHEMA_NAME = "ErrorResponse"


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description="Stable, machine-readable (validation_failed, not_found, "
        "email_unverified, mfa_required, rate_limited, unavailable, ...)"
    )
    message: str = Field(description="Human-readable; never carries PHI")
    details: dict[str, Any] = Field(
        description="More about the error; for a 422 from request validation, "
        '`{"errors": [{"loc": [...], "type": "...", "msg": "..."}]}` (never the values sent)'
    )
    request_id: str | None = Field(description="The X-Request-ID of the request")


class ErrorResponse(BaseModel):
    """The one shape of every error answer."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


DESCRIPTIONS: dict[int, str] = {
    401: "Not signed in, or the access token is invalid, expired or revoked",
    403: "Refused: the caller's role, an administrative gate (MFA session, IP allowlist), "
    "or an email address not yet confirmed (`email_unverified`)",
    404: "No such object, or one the caller may not see",
    409: "Conflicts with the object's current state",
    410: "Deleted or disposed of",
    413: "Larger than the upload limit",
    415: "Unsupported media type",
    422: "The request is not valid",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "Temporarily unavailable (database busy, Temporal unreachable, load shed); "
    "retry after `Retry-After` seconds",
}

_RATE_LIMITED = {429}
_TICKET_WRITE = {409, 410}

# Statuses an operation answers beyond the generic ones (see the module docstring).
EXTRA_ERRORS: dict[tuple[str, str], set[int]] = {
    ("GET", "/readyz"): {503},
    ("POST", f"{API_PREFIX}/auth/register"): _RATE_LIMITED | {409},
    ("POST", f"{API_PREFIX}/auth/login"): _RATE_LIMITED | {401},  # per IP, and lockout
    ("POST", f"{API_PREFIX}/auth/refresh"): {401},
    ("POST", f"{API_PREFIX}/auth/forgot-password"): _RATE_LIMITED,
    ("POST", f"{API_PREFIX}/auth/reset-password"): _RATE_LIMITED,
    ("POST", f"{API_PREFIX}/auth/verify-email"): _RATE_LIMITED,
    ("POST", f"{API_PREFIX}/auth/resend-verification"): _RATE_LIMITED,
    ("POST", f"{API_PREFIX}/auth/mfa/setup"): {409},
    ("POST", f"{API_PREFIX}/auth/mfa/enable"): {409},
    ("PUT", f"{API_PREFIX}/users/{{user_id}}/role"): {409},
    ("POST", f"{API_PREFIX}/users/{{user_id}}/deactivate"): {409},
    ("POST", f"{API_PREFIX}/categories"): {409},
    ("PUT", f"{API_PREFIX}/categories/{{category_id}}"): {409},
    ("DELETE", f"{API_PREFIX}/categories/{{category_id}}"): {409},
    ("GET", f"{API_PREFIX}/tickets/{{ticket_id}}"): {410},
    ("PUT", f"{API_PREFIX}/tickets/{{ticket_id}}"): _TICKET_WRITE,
    ("DELETE", f"{API_PREFIX}/tickets/{{ticket_id}}"): _TICKET_WRITE,
    ("POST", f"{API_PREFIX}/tickets/{{ticket_id}}/status"): _TICKET_WRITE,
    ("POST", f"{API_PREFIX}/tickets/{{ticket_id}}/assign"): _TICKET_WRITE,
    ("POST", f"{API_PREFIX}/tickets/{{ticket_id}}/escalate"): _TICKET_WRITE,
    ("GET", f"{API_PREFIX}/tickets/{{ticket_id}}/history"): {410},
    ("GET", f"{API_PREFIX}/tickets/{{ticket_id}}/comments"): {410},
    ("POST", f"{API_PREFIX}/tickets/{{ticket_id}}/comments"): _TICKET_WRITE,
    ("PUT", f"{API_PREFIX}/comments/{{comment_id}}"): _TICKET_WRITE,
    ("DELETE", f"{API_PREFIX}/comments/{{comment_id}}"): _TICKET_WRITE,
    ("POST", f"{API_PREFIX}/tickets/{{ticket_id}}/attachments"): {410, 413},
    ("GET", f"{API_PREFIX}/tickets/{{ticket_id}}/attachments"): {410},
    ("GET", f"{API_PREFIX}/attachments/{{attachment_id}}"): {409, 410},
    ("DELETE", f"{API_PREFIX}/attachments/{{attachment_id}}"): {409, 410},
    ("GET", f"{API_PREFIX}/analytics/export"): _RATE_LIMITED,
}

_METHODS = {"get", "put", "post", "delete", "patch"}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
}


def _error_response(description: str, status: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{SCHEMA_NAME}"}}
        },
    }
    if status in _HEADERS:
        answer["headers"] = _HEADERS[status]
    return answer


def _statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    wanted = {int(code) for code in operation.get("responses", {}) if code[:1] in "45"}
    if operation.get("security"):
        wanted |= {401, 403}
    if "{" in path:
        wanted.add(404)
    if operation.get("parameters") or operation.get("requestBody"):
        wanted.add(422)
    if path.startswith(API_PREFIX) and not path.endswith("/openapi.json"):
        wanted.add(503)
    return wanted | EXTRA_ERRORS.get((method.upper(), path), set())


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error answers (in the real shape) to every operation of `schema`."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in (
        ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        .get("$defs", {})
        .items()
    ):
        components[name] = definition
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    error_schema.pop("$defs", None)
    components[SCHEMA_NAME] = error_schema
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(method, path, operation)):
                declared = responses.get(str(status), {})
                description = declared.get("description") or DESCRIPTIONS[status]
                if status == 422 and description == "Validation Error":
                    description = DESCRIPTIONS[422]
                responses[str(status)] = _error_response(description, status)
    # FastAPI's own validation shapes are never sent: drop them.
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` return the document with its error answers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
