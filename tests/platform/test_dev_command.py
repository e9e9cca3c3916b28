"""`helpdesk dev` as a developer uses it: one command brings up the Temporal dev server with
its UI, the database and the API with the worker; Ctrl-C stops all of it, leaving no process
behind; a second start finds the data of the first."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from helpdesk import devclamd
from helpdesk.security import TOTP_STEP_SECONDS, totp_at
from helpdesk.settings import Settings
from helpdesk.temporal import connect
from tests.conftest import free_port
from tests.support.clamd import ping as scanner_ping
from tests.support.cli import PASSWORD, cli_env, helpdesk
from workflows.ping import PingWorkflow

pytestmark = [pytest.mark.slow, pytest.mark.temporal]

START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class DevProcess:
    """`helpdesk dev` in a session of its own, as a terminal would run it."""

    def __init__(self, var_dir: Path, ports: dict[str, int]) -> None:
        self.var_dir = var_dir
        self.ports = ports
        self.log = var_dir.parent / f"dev-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.tree: set[int] = set()

    @property
    def env(self) -> dict[str, str]:
        return cli_env(
            self.var_dir,
            HELPDESK_API_PORT=str(self.ports["api"]),
            HELPDESK_TEMPORAL_ADDRESS=f"127.0.0.1:{self.ports['temporal']}",
            HELPDESK_TEMPORAL_UI_PORT=str(self.ports["ui"]),
            HELPDESK_PUBLIC_BASE_URL=f"http://127.0.0.1:{self.ports['api']}",
            HELPDESK_CLAMD_ADDRESS=f"127.0.0.1:{self.ports['clamd']}",
        )

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "helpdesk.cli", "dev"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.var_dir.parent,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_until_serving(self, http: httpx.AsyncClient) -> float:
        assert self.process is not None
        started = time.monotonic()
        deadline = started + START_TIMEOUT
        urls = [
            f"http://127.0.0.1:{self.ports['api']}/docs",
            f"http://127.0.0.1:{self.ports['ui']}/",
        ]
        pending = list(urls)
        while pending and time.monotonic() < deadline:
            assert self.process.poll() is None, f"helpdesk dev exited:\n{self.output()}"
            try:
                response = await http.get(pending[0])
                if response.status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        assert not pending, f"not serving {pending} after {START_TIMEOUT}s:\n{self.output()}"
        self.tree = descendants(self.process.pid)
        return time.monotonic() - started

    def interrupt(self) -> float:
        """Ctrl-C; returns how long the whole stack took to stop."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise AssertionError(f"did not stop within {STOP_TIMEOUT}s:\n{self.output()}") from None
        return time.monotonic() - started

    def kill_leftovers(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in self.tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def login(http: httpx.AsyncClient, base: str, email: str, secret: str, step: int) -> str:
    response = await http.post(
        f"{base}/api/v1/auth/login",
        json={"email": email, "password": PASSWORD, "totp": totp_at(secret, step)},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_dev_runs_the_stack_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port(), "clamd": free_port()}
    base = f"http://127.0.0.1:{ports['api']}"
    ui = f"http://127.0.0.1:{ports['ui']}"
    email = "first.admin@example.test"
    canary = f"CANARY-{uuid.uuid4().hex}"
    workflow_id = f"ping-{uuid.uuid4().hex}"

    first = DevProcess(var_dir, ports)
    second = DevProcess(var_dir, ports)
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            # --- first run: everything comes up ------------------------------------------
            first.start()
            await first.wait_until_serving(http)
            assert "Help desk is running" in first.output()
            assert f"{base}/docs" in first.output()
            assert ui in first.output()
            # The virus scanner: started where clamd is installed, else said once.
            if devclamd.clamd_binary():
                assert f"Scanner      127.0.0.1:{ports['clamd']} (clamd" in first.output()
                assert scanner_ping(("127.0.0.1", ports["clamd"]))
            else:
                assert first.output().count("clamd is not installed") == 1

            # Query strings (search terms, e-mails) never reach the access log.
            assert (await http.get(f"{base}/docs?q={canary}")).status_code == 200

            # Socket.IO is served beside the REST API (an Engine.IO handshake answers).
            handshake = await http.get(
                f"{base}/socket.io/", params={"EIO": "4", "transport": "polling"}
            )
            assert handshake.status_code == 200 and handshake.text.startswith("0{")

            # The Temporal UI runs without a codec endpoint (HELPDESK_TEMPORAL_UI_CODEC is
            # off): a browser cannot authenticate to ours, and the UI would show "Codec
            # Server could not connect" on every page.
            ui_settings = (await http.get(f"{ui}/api/v1/settings")).json()
            assert ui_settings["Codec"]["Endpoint"] == ""

            # An administrator created with the CLI logs in through the API with TOTP.
            created = helpdesk(
                var_dir,
                "create-admin",
                "--email",
                email,
                "--password-stdin",
                stdin=PASSWORD + "\n",
                **{k: v for k, v in first.env.items() if k.startswith("HELPDESK_")},  # type: ignore[arg-type]
            )
            assert created.returncode == 0, created.stderr
            uri = next(x for x in created.stdout.splitlines() if x.startswith("otpauth://"))
            secret = parse_qs(urlparse(uri).query)["secret"][0]
            step = int(time.time() // TOTP_STEP_SECONDS)
            token = await login(http, base, email, secret, step)

            # The worker inside the API process runs workflows on the dev server.
            settings = Settings(
                environment="development",
                var_dir=var_dir,
                temporal_address=f"127.0.0.1:{ports['temporal']}",
            )
            client = await connect(settings)
            assert (
                await client.execute_workflow(
                    PingWorkflow.run,
                    canary,
                    id=workflow_id,
                    task_queue=settings.temporal_task_queue,
                )
                == canary
            )

            # The codec endpoint the UI calls decodes the stored input for the admin.
            history = await client.get_workflow_handle(workflow_id).fetch_history()
            stored = history.events[0].workflow_execution_started_event_attributes.input
            body = {
                "payloads": [
                    {
                        "metadata": {
                            k: base64.b64encode(v).decode() for k, v in p.metadata.items()
                        },
                        "data": base64.b64encode(p.data).decode(),
                    }
                    for p in stored.payloads
                ]
            }
            decoded = await http.post(
                f"{base}/api/v1/temporal-codec/decode",
                json=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Origin": ui,
                    "X-Namespace": "default",
                },
            )
            assert decoded.status_code == 200, decoded.text
            assert decoded.headers["access-control-allow-origin"] == ui
            assert canary in base64.b64decode(decoded.json()["payloads"][0]["data"]).decode()

            # --- Ctrl-C: everything stops, nothing is left behind ----------------------
            tree = set(first.tree)
            assert tree, "the Temporal dev server should run as a child process"
            elapsed = first.interrupt()
            assert first.process is not None
            assert first.process.returncode == 0, first.output()
            assert elapsed < STOP_TIMEOUT
            assert [pid for pid in tree if alive(pid)] == []
            with pytest.raises(ProcessLookupError):
                os.killpg(first.process.pid, 0)
            assert "Traceback" not in first.output()
            assert '"GET /docs HTTP/1.1" 200' in first.output()
            assert canary not in first.output()
            assert "Fatal Python error" not in first.output()

            # --- second run: the data of the first is still there ----------------------
            second.start()
            await second.wait_until_serving(http)
            later_step = max(step, int(time.time() // TOTP_STEP_SECONDS)) + 1
            await login(http, base, email, secret, later_step)
            client = await connect(settings)
            assert await client.get_workflow_handle(workflow_id).result() == canary
            # The search attributes managers filter by survive a restart too.
            from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=settings.temporal_namespace)
            )
            assert {"TicketStatus", "TicketPriority", "AssignedAgent", "Escalated"} <= set(
                listed.custom_attributes
            )

            tree = set(second.tree)
            second.interrupt()
            assert second.process is not None
            assert second.process.returncode == 0, second.output()
            assert [pid for pid in tree if alive(pid)] == []
        finally:
            first.kill_leftovers()
            second.kill_leftovers()


def test_sigterm_stops_dev_too(tmp_path: Path) -> None:
    """SIGTERM (a service manager's stop) is as orderly as Ctrl-C."""
    var_dir = tmp_path / "var"
    dev = DevProcess(
        var_dir,
        {"api": free_port(), "temporal": free_port(), "ui": free_port(), "clamd": free_port()},
    )

    async def serve_then_stop() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            await dev.wait_until_serving(http)

    try:
        dev.start()
        asyncio.run(serve_then_stop())
        tree = set(dev.tree)
        assert dev.process is not None
        dev.process.send_signal(signal.SIGTERM)
        assert dev.process.wait(timeout=STOP_TIMEOUT) == 0, dev.output()
        assert [pid for pid in tree if alive(pid)] == []
        assert "Stopped." in dev.output()
    finally:
        dev.kill_leftovers()


def test_a_killed_dev_leaves_no_temporal_server(tmp_path: Path) -> None:
    """Even SIGKILL (no chance to clean up) takes the Temporal server down with it."""
    var_dir = tmp_path / "var"
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port(), "clamd": free_port()}
    dev = DevProcess(var_dir, ports)

    async def serve() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            await dev.wait_until_serving(http)

    try:
        dev.start()
        asyncio.run(serve())
        tree = set(dev.tree)
        assert tree
        assert dev.process is not None
        dev.process.kill()
        dev.process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and any(alive(pid) for pid in tree):
            time.sleep(0.2)
        assert [pid for pid in tree if alive(pid)] == []
    finally:
        dev.kill_leftovers()
