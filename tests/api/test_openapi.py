"""The OpenAPI document is complete and true: a bearer scheme on every protected
operation (with its 401 and 403), every error answer in the one JSON shape the API really
sends (FastAPI's default `{"detail": [...]}` nowhere), and real error responses of each
status validate against the schema the document gives for them."""

from __future__ import annotations

from typing import Any

import pytest

from api.app import PUBLIC_ROUTES
from models.enums import Role
from tests.support.auth import API, unique_email
from tests.support.factories import make_user

METHODS = {"get", "put", "post", "delete", "patch"}


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    ]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def violations(doc: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "") -> list[str]:
    """The places where `value` breaks `schema` (the JSON Schema subset the document uses)."""
    schema = resolve(doc, schema)
    if "anyOf" in schema:
        options = [violations(doc, option, value, at) for option in schema["anyOf"]]
        return [] if any(not found for found in options) else [f"{at}: matches no anyOf"]
    kind = schema.get("type")
    checks = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "boolean": bool,
        "null": type(None),
    }
    if kind is not None and not isinstance(value, checks[kind]):
        return [f"{at}: {type(value).__name__} is not {kind}"]
    problems: list[str] = []
    if kind == "object":
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{at}.{name}: missing")
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            problems += [f"{at}.{k}: not documented" for k in value if k not in properties]
        for name, sub in properties.items():
            if name in value:
                problems += violations(doc, sub, value[name], f"{at}.{name}")
    return problems


async def test_every_protected_operation_declares_the_bearer_scheme_and_its_401(client):
    doc = client.app.openapi()
    scheme = doc["components"]["securitySchemes"]["BearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    missing = []
    for method, path, op in operations(doc):
        if (method, path) in PUBLIC_ROUTES:
            assert not op.get("security"), f"{method} {path} is public"
            continue
        if op.get("security") != [{"BearerAuth": []}]:
            missing.append(f"{method} {path}: no security")
        for status in ("401", "403"):
            if status not in op["responses"]:
                missing.append(f"{method} {path}: no {status}")
    assert not missing, "\n".join(missing)


async def test_every_error_answer_has_the_real_shape(client):
    doc = client.app.openapi()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    wrong = []
    for method, path, op in operations(doc):
        for status, answer in op["responses"].items():
            if status[0] not in "45":
                continue
            schema = answer.get("content", {}).get("application/json", {}).get("schema")
            if schema != {"$ref": "#/components/schemas/ErrorResponse"}:
                wrong.append(f"{method} {path} {status}: {schema}")
        if "{" in path and "404" not in op["responses"]:
            wrong.append(f"{method} {path}: no 404")
        if (op.get("parameters") or op.get("requestBody")) and "422" not in op["responses"]:
            wrong.append(f"{method} {path}: no 422")
    assert not wrong, "\n".join(wrong)
    # The rate-limited anonymous routes say so.
    for path in ("login", "register", "forgot-password", "resend-verification"):
        assert "429" in doc["paths"][f"{API}/auth/{path}"]["post"]["responses"], path
    assert "429" in doc["paths"][f"{API}/analytics/export"]["get"]["responses"]


@pytest.mark.parametrize("settings", [{"rate_limit_per_minute": 2}], indirect=True)
async def test_real_error_responses_match_the_documented_schema(client, runtime):
    doc = client.app.openapi()
    end_user = await make_user(runtime, Role.END_USER)
    admin = await make_user(runtime, Role.ADMINISTRATOR)
    email = unique_email("doc")
    body = {"email": email, "password": "long enough password 1", "first_name": "Doc"}
    assert (await client.post(f"{API}/auth/register", json=body)).status_code == 201
    missing_user = f"{API}/users/00000000-0000-0000-0000-000000000000/audit-log"
    cases = [
        ("GET", f"{API}/users/profile", "/users/profile", {}, None, 401),
        ("GET", f"{API}/users", "/users", end_user.headers, None, 403),
        ("GET", missing_user, "/users/{user_id}/audit-log", admin.headers, None, 404),
        ("PUT", f"{API}/users/profile", "/users/profile", end_user.headers, {"role": "X"}, 422),
        ("POST", f"{API}/auth/register", "/auth/register", {}, body, 409),
        ("POST", f"{API}/auth/register", "/auth/register", {}, body, 429),
    ]
    for method, url, path, headers, payload, status in cases:
        response = await client.request(method, url, headers=headers, json=payload)
        assert response.status_code == status, (method, url, response.text)
        documented = doc["paths"][f"{API}{path}"][method.lower()]["responses"][str(status)]
        schema = documented["content"]["application/json"]["schema"]
        got = response.json()
        assert "detail" not in got
        assert violations(doc, schema, got) == [], (status, got)
    # A request-validation 422 carries the documented `details.errors` (never the values).
    bad = await client.put(f"{API}/users/profile", headers=end_user.headers, json={"role": "X"})
    [error] = bad.json()["error"]["details"]["errors"]
    assert set(error) == {"loc", "type", "msg"} and "X" not in str(error)
