"""CORS refusals use the API's JSON error shape (issue 11: a refused preflight answered
400 text/plain "Disallowed CORS origin"), for the API and the Temporal codec alike."""

from __future__ import annotations

import httpx
import pytest

PORTAL = "https://portal.example.test"
EVIL = "https://evil.example.test"


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method}


@pytest.mark.parametrize("settings", [{"cors_origins": [PORTAL]}], indirect=True)
@pytest.mark.parametrize(
    ("path", "origin", "method", "refused"),
    [
        ("/api/v1/tickets", EVIL, "POST", ["origin"]),
        ("/api/v1/tickets", PORTAL, "PATCH", ["method"]),
        ("/api/v1/temporal-codec/decode", EVIL, "POST", ["origin"]),
    ],
)
async def test_a_refused_preflight_answers_the_json_error_shape(
    client: httpx.AsyncClient, path: str, origin: str, method: str, refused: list[str]
):
    response = await client.options(path, headers=_preflight(origin, method))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "cors_refused"
    assert error["details"] == {"refused": refused}
    assert "access-control-allow-origin" not in response.headers or origin == PORTAL


@pytest.mark.parametrize("settings", [{"cors_origins": [PORTAL]}], indirect=True)
async def test_an_allowed_preflight_still_succeeds(client: httpx.AsyncClient):
    response = await client.options("/api/v1/tickets", headers=_preflight(PORTAL))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PORTAL
