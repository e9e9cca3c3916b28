"""The emailed links opened in a real headless Chromium (Debian's `chromium`; skipped when
it is not installed): the pages' nonce'd inline scripts run under their strict CSP, read the
token from the fragment and post it; the account is verified, the password is changed (the
reset form is filled in through the DevTools protocol)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from api.app import create_app
from helpdesk.runtime import Runtime
from tests.conftest import free_port
from tests.support.auth import API, bearer, link_token, login, mail_to, register, unique_email
from tests.support.factories import PASSWORD, make_user

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


async def _dump_dom(url: str, profile: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return out.decode()


@contextlib.asynccontextmanager
async def live_server(runtime: Runtime) -> AsyncIterator[int]:
    """The app served over real HTTP on a free port; the mails link to it."""
    port = free_port()
    runtime.settings.public_base_url = f"http://127.0.0.1:{port}"
    app = create_app(runtime=runtime, run_worker=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        await serving


class DevTools:
    """Just enough of the Chrome DevTools protocol to drive one page."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        await self.connection.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await self.connection.recv())
            if message.get("id") == ident:
                return dict(message.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        async with asyncio.timeout(timeout):
            while not (value := await self.evaluate(expression)):
                await asyncio.sleep(0.1)
        return value


@contextlib.asynccontextmanager
async def chromium_page(profile: Path) -> AsyncIterator[DevTools]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--remote-debugging-port={port}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(30):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                    pages = [t for t in targets if t.get("type") == "page"]
                    if pages:
                        break
                await asyncio.sleep(0.2)
        async with websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            yield DevTools(ws)
    finally:
        process.terminate()
        await process.wait()


async def test_chromium_opens_the_link_and_the_account_is_verified(client, runtime, tmp_path):
    async with live_server(runtime) as port:
        email = unique_email("browser")
        assert (await register(client, email)).status_code == 201
        [message] = mail_to(runtime, email)
        url = next(word for word in message["body"].split() if "#token=" in word)
        assert url.startswith(f"http://127.0.0.1:{port}/verify-email#token=")
        dom = await _dump_dom(url, tmp_path / "chromium")
        assert 'data-outcome="verified"' in dom, dom
        assert link_token(message) not in dom  # the token left the page
        tokens = (await login(client, email)).json()
        profile = await client.get(f"{API}/users/profile", headers=bearer(tokens["access_token"]))
        assert profile.status_code == 200 and profile.json()["is_verified"] is True
        # The same link again: spent.
        again = await _dump_dom(url, tmp_path / "chromium2")
        assert 'data-outcome="failed"' in again


async def test_chromium_fills_in_the_reset_page_and_the_password_changes(client, runtime, tmp_path):
    actor = await make_user(runtime)
    new_password = "a browser-made password 31"
    async with live_server(runtime) as port, chromium_page(tmp_path / "chromium") as page:
        asked = await client.post(f"{API}/auth/forgot-password", json={"email": actor.email})
        assert asked.status_code == 202
        [message] = mail_to(runtime, actor.email)
        url = next(word for word in message["body"].split() if "#token=" in word)
        assert url.startswith(f"http://127.0.0.1:{port}/reset-password#token=")
        await page.call("Page.navigate", url=url)
        await page.wait_for(
            "document.readyState === 'complete' && !!document.getElementById('reset')"
        )
        assert await page.evaluate("location.hash") == ""  # the token left the address bar
        await page.evaluate(
            f"document.getElementById('password').value = {json.dumps(new_password)};"
            f"document.getElementById('repeat').value = {json.dumps(new_password)};"
            "document.getElementById('submit').click(); true"
        )
        outcome = await page.wait_for("document.getElementById('status').dataset.outcome")
        assert outcome == "changed"
    assert (await login(client, actor.email, PASSWORD)).status_code == 401
    assert (await login(client, actor.email, new_password)).status_code == 200
