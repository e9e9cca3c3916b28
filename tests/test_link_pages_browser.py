"""The emailed link opened in a real headless Chromium (Debian's `chromium`; skipped when
it is not installed): the page's nonce'd inline script runs under its strict CSP, reads the
token from the fragment, posts it, and the account is verified."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from tests.conftest import free_port
from tests.test_auth import API, bearer, link_token, login, mail_to, register, unique_email

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


async def test_chromium_opens_the_link_and_the_account_is_verified(client, runtime, tmp_path):
    port = free_port()
    runtime.settings.public_base_url = f"http://127.0.0.1:{port}"  # links to this server
    app = create_app(runtime=runtime, run_worker=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
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
    finally:
        server.should_exit = True
        await serving
