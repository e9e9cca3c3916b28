"""Prometheus metrics: what the API and the worker expose, that no label carries an id, an
email address or PHI, the alert rules (promtool) and the dashboard, and a real Prometheus
scraping a running API and a standalone worker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from api.app import create_app, create_asgi_app
from helpdesk import metrics
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from models.enums import Role
from tests.conftest import free_port
from tests.support import comm as comm_support
from tests.support.factories import make_user
from tests.support.tickets import create_ticket, set_status, ticket_api

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def sample(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples `name{labels...}` in an exposition text (None if none).

    Summed because a partial label set (outcome="ok") matches one series per other
    label (each kind); the first match alone may be a kind the caller did not touch.
    """
    found: list[float] = []
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            found.append(float(line.rsplit(" ", 1)[1]))
    return sum(found) if found else None


async def test_metrics_label_requests_by_route_template(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime, Role.END_USER)
    missing = uuid.uuid4()
    for _ in range(2):
        response = await client.get(f"/api/v1/tickets/{missing}", headers=user.headers)
        assert response.status_code == 404
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    count = sample(
        text,
        "helpdesk_http_requests_total",
        method="GET",
        route="/api/v1/tickets/{ticket_id}",
        status="404",
    )
    assert count is not None and count >= 2
    assert str(missing) not in text
    assert "helpdesk_http_request_duration_seconds_bucket" in text
    assert "helpdesk_db_pool_connections_in_use" in text


async def test_anchor_and_backup_times_are_exported(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    from helpdesk.audit_commands import anchor_database

    before = (await client.get("/metrics")).text
    assert sample(before, "helpdesk_audit_anchor_last_timestamp_seconds") is None
    await anchor_database(runtime.settings)
    backup = runtime.settings.backups_path / "20261201T000000Z-0123abcd"
    backup.mkdir(parents=True)
    after = (await client.get("/metrics")).text
    anchored = sample(after, "helpdesk_audit_anchor_last_timestamp_seconds")
    assert anchored is not None and anchored > 1.7e9
    assert sample(after, "helpdesk_backup_last_success_timestamp_seconds") == 1796083200.0


async def test_metrics_refused_outside_the_allowed_networks(runtime: Runtime) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={"metrics_allowed_networks": ["10.1.2.3/32"]}
    )
    app = create_app(runtime=runtime, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_metrics_can_be_turned_off(runtime: Runtime) -> None:
    """HELPDESK_METRICS_ENABLED=false: no endpoint, and requests are not counted."""
    runtime.settings = runtime.settings.model_copy(update={"metrics_enabled": False})
    app = create_app(runtime=runtime, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        from prometheus_client import REGISTRY, generate_latest

        counted = sample(
            generate_latest(REGISTRY).decode(), "helpdesk_http_requests_total", route="/healthz"
        )
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 404
        after = sample(
            generate_latest(REGISTRY).decode(), "helpdesk_http_requests_total", route="/healthz"
        )
    assert after == counted


async def test_a_lifecycle_leaves_no_identifier_or_phi_in_metrics(
    runtime: Runtime, temporal_client: object
) -> None:
    canary = f"Canary{uuid.uuid4().hex[:10]}"
    requester = await make_user(
        runtime, Role.END_USER, email=f"{canary.lower()}@patients.example", full_name=canary
    )
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    before = sample((await _scrape(runtime)), "helpdesk_ticket_commands_total", outcome="ok")
    async with ticket_api(runtime, temporal_client) as http:  # type: ignore[arg-type]
        ticket = await create_ticket(
            http, requester, title=f"{canary} title", description=f"{canary} description"
        )
        assigned = await http.post(
            f"/api/v1/tickets/{ticket['id']}/assign",
            json={"agent_id": str(agent.id)},
            headers=agent.headers,
        )
        assert assigned.status_code == 200, assigned.text
        moved = await set_status(http, agent, ticket["id"], "IN_PROGRESS")
        assert moved.status_code == 200, moved.text
        refused = await set_status(http, agent, ticket["id"], "OPEN")
        assert refused.status_code == 409
        text = (await http.get("/metrics")).text
    assert canary not in text and canary.lower() not in text
    assert not UUID.search(text), UUID.search(text)
    assert not EMAIL.search(text), EMAIL.search(text)
    refused_count = sample(text, "helpdesk_ticket_commands_total", outcome="refused")
    assert refused_count is not None and refused_count >= 1
    ok_after = sample(text, "helpdesk_ticket_commands_total", outcome="ok")
    assert ok_after is not None and ok_after >= (before or 0) + 1


async def _scrape(runtime: Runtime) -> str:
    app = create_app(runtime=runtime, run_worker=False)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return (await http.get("/metrics")).text


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (scripts/install-prometheus.sh installs it)")
    return tool


def test_alert_rules_pass_promtool() -> None:
    promtool = _promtool()
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "7 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_dashboard_and_rules_name_only_metrics_that_exist() -> None:
    """Every helpdesk_* series a panel or rule queries is one this code exports."""
    from prometheus_client import REGISTRY, generate_latest

    exported = {
        line.split("{")[0].split(" ")[0]
        for line in generate_latest(REGISTRY).decode().splitlines()
        if line.startswith("helpdesk_")
    }
    exported |= {
        line.split(" ")[2]
        for line in generate_latest(REGISTRY).decode().splitlines()
        if line.startswith("# TYPE helpdesk_")
    }
    dashboard = json.loads((DEPLOY / "grafana" / "helpdesk-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append((DEPLOY / "prometheus" / "alerts.yml").read_text())
    wanted = {name for expr in exprs for name in re.findall(r"helpdesk_[a-z_]+", expr)}
    unknown = {
        name
        for name in wanted
        if name not in exported
        and name.removesuffix("_total") not in exported
        and name.removesuffix("_bucket") not in exported
    }
    assert not unknown, f"queried but never exported: {sorted(unknown)}"


async def _wait_for_targets(url: str, jobs: set[str], timeout: float = 90.0) -> dict[str, str]:
    health: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            try:
                data = (await http.get(f"{url}/api/v1/targets")).json()["data"]
            except (httpx.HTTPError, ValueError, KeyError):
                await asyncio.sleep(0.5)
                continue
            health = {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}
            if jobs <= set(health) and all(health[j] == "up" for j in jobs):
                return health
            await asyncio.sleep(0.5)
    return health


async def _query(url: str, expr: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(timeout=5) as http:
        body = (await http.get(f"{url}/api/v1/query", params={"query": expr})).json()
    result: list[dict[str, object]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_the_api_and_a_standalone_worker(
    runtime: Runtime,
    settings: Settings,
    temporal_server: str,
    temporal_client: object,
    tmp_path: Path,
) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (scripts/install-prometheus.sh installs it)")
    worker_port, sdk_port, prom_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "HELPDESK_ENVIRONMENT": "test",
        "HELPDESK_VAR_DIR": str(settings.var_dir),
        "HELPDESK_DATABASE_URL": settings.database_url,
        "HELPDESK_EMAIL_BACKEND": "file",
        "HELPDESK_TEMPORAL_ADDRESS": temporal_server,
        "HELPDESK_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "HELPDESK_METRICS_PORT": str(worker_port),
        "HELPDESK_TEMPORAL_METRICS_ADDRESS": f"127.0.0.1:{sdk_port}",
    }
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "helpdesk"), "worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    asgi = create_asgi_app(runtime=runtime, temporal_client=temporal_client, run_worker=False)
    prom = None
    try:
        async with comm_support.serve(asgi, asgi) as server:
            api_target = server.url.removeprefix("http://").rstrip("/")
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{server.url}/healthz")).status_code == 200
            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "scrape_configs:\n"
                f"  - job_name: helpdesk-api\n    static_configs: [{{targets: ['{api_target}']}}]\n"
                "  - job_name: helpdesk-worker\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{worker_port}']}}]\n"
                "  - job_name: temporal-sdk\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{sdk_port}']}}]\n"
            )
            prom = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"http://127.0.0.1:{prom_port}"
            jobs = {"helpdesk-api", "helpdesk-worker", "temporal-sdk"}
            health = await _wait_for_targets(url, jobs)
            assert all(health.get(job) == "up" for job in jobs), health
            api_series = await _query(url, 'helpdesk_http_requests_total{job="helpdesk-api"}')
            assert api_series, "no request counted on the API"
            pool = await _query(url, 'helpdesk_db_pool_connections_idle{job="helpdesk-worker"}')
            assert pool, "the worker's database pool is not exported"
            sdk = await _query(url, '{job="temporal-sdk", __name__=~"temporal_.+"}')
            assert sdk, "the Temporal SDK exported nothing"
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_every_metric_is_declared_in_one_module() -> None:
    """Labels are closed sets in code: the label names are what the module declares."""
    declared = {
        metrics.HTTP_REQUESTS: ("method", "route", "status"),
        metrics.TICKET_COMMANDS: ("kind", "outcome"),
        metrics.TICKET_EVENTS: ("event",),
        metrics.SCANS: ("verdict",),
    }
    for metric, labels in declared.items():
        assert tuple(metric._labelnames) == labels
