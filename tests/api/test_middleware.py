"""Client IP resolution trusts X-Forwarded-For only from configured proxies."""

import ipaddress
import sqlite3

import pytest

from api.middleware import client_ip
from models.enums import Role
from tests.support.factories import make_user

PROXIES = [ipaddress.ip_network("10.0.0.0/8")]


def test_untrusted_peer_forwarded_for_is_ignored():
    assert client_ip("203.0.113.5", "198.51.100.1", PROXIES) == "203.0.113.5"


def test_trusted_proxy_gives_the_first_untrusted_hop_from_the_right():
    assert client_ip("10.0.0.2", "198.51.100.1, 203.0.113.7, 10.0.0.9", PROXIES) == "203.0.113.7"


def test_spoofed_garbage_falls_back_to_peer():
    assert client_ip("10.0.0.2", "not-an-ip", PROXIES) == "10.0.0.2"


def test_all_hops_trusted_gives_the_leftmost():
    assert client_ip("10.0.0.2", "10.1.1.1", PROXIES) == "10.1.1.1"


async def test_responses_carry_security_headers_and_request_id(client):
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    bad = await client.get("/healthz", headers={"X-Request-ID": "<script>"})
    assert bad.headers["x-request-id"] != "<script>"


async def test_unknown_route_has_the_error_shape(client):
    response = await client.get("/api/v1/nope")
    assert response.status_code == 404
    body = response.json()
    assert body["error"]["code"] == "not_found"
    assert body["error"]["request_id"]


@pytest.mark.parametrize("settings", [{"database_busy_timeout_seconds": 0.3}], indirect=True)
async def test_a_locked_database_is_a_503_with_retry_after_not_a_500(client, runtime, settings):
    """Another process holds SQLite's write lock past the busy timeout: the caller is told to
    retry, with the one error shape, and nothing half-done is left."""
    actor = await make_user(runtime, Role.END_USER)
    path = settings.database_url.split("///", 1)[1]
    blocker = sqlite3.connect(path, timeout=1)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        response = await client.get("/api/v1/users/me", headers=actor.headers)
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "unavailable"
    again = await client.get("/api/v1/users/me", headers=actor.headers)
    assert again.status_code == 200
