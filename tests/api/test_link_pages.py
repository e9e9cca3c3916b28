"""The pages emailed links open when no portal is configured: /verify-email and
/reset-password on the API host. Strict CSP with a fresh nonce per response, no script from
elsewhere, and the flows work when driven as the page drives them (and, where Chromium is
installed, in a real headless browser: tests/browser.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from tests.support.auth import (
    API,
    PASSWORD,
    bearer,
    link_token,
    login,
    mail_to,
    register,
    unique_email,
)
from tests.support.factories import make_user

PAGES = ("/verify-email", "/reset-password")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def _directives(csp: str) -> dict[str, str]:
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in csp.split(";")
        if part.strip()
    }


@pytest.mark.parametrize("path", PAGES)
async def test_the_page_has_a_strict_csp_with_a_fresh_nonce(client, path):
    first, second = await client.get(path), await client.get(path)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/html")
    csp = _directives(first.headers["content-security-policy"])
    nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{20,})'", csp["script-src"])
    assert nonce, csp["script-src"]
    assert csp["default-src"] == "'none'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert "unsafe-inline" not in first.headers["content-security-policy"]
    assert "unsafe-eval" not in first.headers["content-security-policy"]
    other = _directives(second.headers["content-security-policy"])["script-src"]
    assert other != csp["script-src"]  # a new nonce per response
    assert first.headers["cache-control"] == "no-store"
    assert first.headers["referrer-policy"] == "no-referrer"

    # One inline script, carrying the nonce; nothing loaded from anywhere.
    tags = _tags(first.text)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts == [{"nonce": nonce.group(1)}]
    assert not [t for t, attrs in tags if "src" in attrs or "href" in attrs]
    assert not re.search(r"https?://", first.text)
    # The page posts to this origin's API only.
    assert f"{API}/auth/" in first.text


async def test_the_pages_are_not_api_operations(client):
    paths = client.app.openapi()["paths"]
    assert not set(PAGES) & set(paths)


async def test_the_verification_flow_as_the_page_runs_it(client, runtime):
    email = unique_email("page")
    assert (await register(client, email)).status_code == 201
    [message] = mail_to(runtime, email)
    link = re.search(r"(\S+)#token=(\S+)", message["body"])
    assert link is not None
    assert link.group(1) == f"{runtime.settings.public_base_url}/verify-email"
    page = await client.get("/verify-email")  # the browser never sends the fragment
    assert page.status_code == 200 and 'fetch("/api/v1/auth/verify-email"' in page.text
    # What the script sends: {"token": <fragment's token>} as JSON, no credentials.
    posted = await client.post(f"{API}/auth/verify-email", json={"token": link.group(2)})
    assert posted.json() == {"status": "verified"}
    tokens = (await login(client, email)).json()
    me = await client.get(f"{API}/users/profile", headers=bearer(tokens["access_token"]))
    assert me.json()["is_verified"] is True


async def test_the_reset_flow_as_the_page_runs_it(client, runtime):
    actor = await make_user(runtime)
    asked = await client.post(f"{API}/auth/forgot-password", json={"email": actor.email})
    assert asked.status_code == 202
    [message] = mail_to(runtime, actor.email)
    assert f"{runtime.settings.public_base_url}/reset-password#token=" in message["body"]
    page = await client.get("/reset-password")
    assert 'fetch("/api/v1/auth/reset-password"' in page.text and "new_password" in page.text
    new_password = "a brand new password 77"
    posted = await client.post(
        f"{API}/auth/reset-password",
        json={"token": link_token(message), "new_password": new_password},
    )
    assert posted.json() == {"status": "password_changed"}
    assert (await login(client, actor.email, PASSWORD)).status_code == 401
    assert (await login(client, actor.email, new_password)).status_code == 200


@pytest.mark.parametrize(
    "settings", [{"public_base_url": "https://portal.example.test/help/"}], indirect=True
)
async def test_with_a_portal_the_links_go_there(client, runtime):
    email = unique_email("portal")
    assert (await register(client, email)).status_code == 201
    [message] = mail_to(runtime, email)
    assert "https://portal.example.test/help/verify-email#token=" in message["body"]
    actor = await make_user(runtime)
    await client.post(f"{API}/auth/forgot-password", json={"email": actor.email})
    [reset] = mail_to(runtime, actor.email)
    assert "https://portal.example.test/help/reset-password#token=" in reset["body"]
