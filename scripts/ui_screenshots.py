"""Screenshots of a ticket as a manager sees it in the Temporal UI (README, docs/).

    .venv/bin/python scripts/ui_screenshots.py [--out docs]

Starts a Temporal dev server with its UI (no codec endpoint: the default of `helpdesk dev`),
runs the API's ticket commands with a real worker against a throw-away SQLite database (the
ordinary life of tests/replay/test_history_size.py: created, two comments, an edit, an escalation,
a reassignment, six status changes, closed) plus one ticket left open, then has headless
Chromium (Debian's `chromium`, scripts/install-chromium.sh) capture the workflow list and the
ticket's timeline. It also checks that no page shows the "Codec Server could not connect"
banner and that the summaries read as text (`temporal workflow describe -o json`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BANNER = "Codec Server could not connect"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("chromium is missing: run scripts/install-chromium.sh")
    return found


def capture(url: str, target: Path, *, width: int = 1440, height: int = 1000) -> str:
    """Screenshot `url` into `target`; the rendered DOM (to look for the codec banner)."""
    base = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        "--virtual-time-budget=20000",
    ]
    # A page that keeps polling (a running workflow's) may never let the virtual time budget
    # run out: bounded by a real timeout too.
    subprocess.run(  # noqa: S603 (our own arguments)
        [*base, f"--screenshot={target}", url], check=True, capture_output=True, timeout=120
    )
    dom = subprocess.run(  # noqa: S603
        [*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
    )
    return dom.stdout


async def main(out: Path) -> int:
    from temporalio.testing import WorkflowEnvironment

    from api.app import prepare_runtime
    from helpdesk.migrate import upgrade_async
    from helpdesk.runtime import build_runtime
    from helpdesk.settings import Settings
    from helpdesk.temporal import SEARCH_ATTRIBUTES, connect, ticket_workflow_id
    from models.enums import Role
    from tests.conftest import free_port
    from tests.support.factories import make_user
    from tests.support.ordinary_life import ordinary_life
    from tests.support.tickets import create_ticket, set_status, ticket_api

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
    address = env.client.service_client.config.target_host
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        db = var / "helpdesk.db"
        settings = Settings(  # type: ignore[call-arg]
            environment="test",
            var_dir=var,
            database_url=f"sqlite+aiosqlite:///{db}",
            email_backend="file",
            argon2_time_cost=1,
            argon2_memory_cost=8192,
            run_worker_in_api=False,
            auto_assign_on_create=False,
            temporal_task_queue=f"ui-{uuid.uuid4().hex[:8]}",
        )
        await upgrade_async(settings.database_url)
        runtime = prepare_runtime(build_runtime(settings))
        client = await connect(settings, address=address)
        try:
            closed = await ordinary_life(runtime, client)
            requester = await make_user(runtime, Role.END_USER)
            agent = await make_user(runtime, Role.SUPPORT_AGENT)
            async with ticket_api(runtime, client) as http:  # one left open, for the list
                open_id = (await create_ticket(http, requester, priority="HIGH"))["id"]
                await set_status(http, agent, open_id, "IN_PROGRESS")
            wid = ticket_workflow_id(closed)
            described = (
                await asyncio.to_thread(
                    subprocess.run,
                    [binary, "workflow", "describe", "--address", address, "-w", wid, "-o", "json"],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            ).stdout
            stored = json.loads(described)["executionConfig"]["userMetadata"]["summary"]
            text = json.loads(base64.b64decode(stored["data"]))  # plaintext JSON, no codec
            print("static summary as the UI reads it:", text)
            base = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows"
            pages = {
                "temporal-ui-ticket-list.png": base,
                "temporal-ui-ticket-timeline.png": f"{base}/{wid}",
            }
            failed = False
            for name, url in pages.items():
                dom = await asyncio.to_thread(capture, url, out / name)
                rendered = wid in dom  # the page rendered the ticket (the check means something)
                shown = BANNER in dom
                failed |= shown or not rendered
                verdict = "CODEC BANNER SHOWN" if shown else "no codec banner"
                print(f"{out / name}: {verdict}{'' if rendered else ', NOT RENDERED'}")
            return 1 if failed else 0
        finally:
            await runtime.close()
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    raise SystemExit(asyncio.run(main(out)))
