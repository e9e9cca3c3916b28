"""A ticket's page in the Temporal UI, rendered by headless Chromium as a manager's browser
would: no "Codec Server could not connect" banner, and the activity summaries readable.

Uses scripts/ui_screenshots.py's `capture` (Debian's `chromium`, installed by
scripts/install-chromium.sh in `make test`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from helpdesk.temporal import SEARCH_ATTRIBUTES, connect, ticket_workflow_id
from models.enums import Role
from tests.conftest import free_port
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api

pytestmark = pytest.mark.temporal

ROOT = Path(__file__).resolve().parents[2]


def _screenshots() -> Any:
    spec = importlib.util.spec_from_file_location(
        "ui_screenshots", ROOT / "scripts/ui_screenshots.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not installed: run scripts/install-chromium.sh",
)
async def test_a_tickets_ui_page_shows_summaries_and_no_codec_banner(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    from temporalio.testing import WorkflowEnvironment

    shots = _screenshots()
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        ip="127.0.0.1",
        port=free_port(),
        ui=True,
        ui_port=ui_port,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=["--ui-disable-news-fetch"],
    )
    try:
        client = await connect(settings, address=env.client.service_client.config.target_host)
        requester = await make_user(runtime, Role.END_USER)
        agent = await make_user(runtime, Role.SUPPORT_AGENT)
        async with ticket_api(runtime, client) as http:
            tid = (await create_ticket(http, requester, priority="HIGH"))["id"]
            assert (await set_status(http, agent, tid, "IN_PROGRESS")).status_code == 200
            await set_status(http, agent, tid, "RESOLVED")
            assert (await set_status(http, requester, tid, "CLOSED")).status_code == 200
            handle = client.get_workflow_handle(ticket_workflow_id(tid))
            async with asyncio.timeout(60):
                await handle.result()
        url = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/{ticket_workflow_id(tid)}"
        dom = await asyncio.to_thread(shots.capture, url, tmp_path / "page.png")
        assert ticket_workflow_id(tid) in dom  # the page rendered the ticket
        assert shots.BANNER not in dom
        assert "Status OPEN → IN_PROGRESS" in dom  # an activity's summary, as text
    finally:
        await env.shutdown()
