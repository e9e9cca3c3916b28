"""A real worker on the real Temporal dev server: the echo workflow runs, and what Temporal
stores is ciphertext (the payload codec is in effect), while our client reads it back."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from helpdesk.temporal import ENCODING
from workers.worker import build_worker, run_worker_in_background
from workflows.ping import PingWorkflow
from workflows.registry import WORKFLOWS

pytestmark = pytest.mark.temporal


def test_registry_lists_the_ping_workflow() -> None:
    assert PingWorkflow in WORKFLOWS


async def test_worker_polls_with_the_configured_pollers(runtime, temporal_client) -> None:
    worker = build_worker(temporal_client, runtime, task_queue="tq-config-only")
    assert worker.task_queue == "tq-config-only"
    config = worker.config()
    assert config["workflow_task_poller_behavior"].maximum == (
        runtime.settings.workflow_task_pollers
    )
    assert PingWorkflow in config["workflows"]


async def test_ping_runs_and_its_history_holds_only_ciphertext(
    runtime, temporal_server, temporal_client
) -> None:
    runtime.temporal = temporal_client
    canary = f"CANARY-{uuid.uuid4().hex}"
    workflow_id = f"ping-{uuid.uuid4().hex}"
    async with run_worker_in_background(runtime):
        result = await temporal_client.execute_workflow(
            PingWorkflow.run,
            canary,
            id=workflow_id,
            task_queue=runtime.settings.temporal_task_queue,
        )
    assert result == canary

    # A client without our codec sees what the server stores.
    plain = await Client.connect(temporal_server, namespace=runtime.settings.temporal_namespace)
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    assert canary not in history.to_json()
    for event in history.events:
        assert canary.encode() not in event.SerializeToString()

    started = history.events[0].workflow_execution_started_event_attributes
    completed = history.events[-1].workflow_execution_completed_event_attributes
    for payloads in (started.input.payloads, completed.result.payloads):
        assert [p.metadata["encoding"] for p in payloads] == [ENCODING]

    # Our client (same converter as API and worker) reads the stored input back.
    decoded = await temporal_client.data_converter.decode(started.input.payloads, [str])
    assert decoded == [canary]
    assert await temporal_client.get_workflow_handle(workflow_id).result() == canary


async def test_worker_context_requires_a_connected_client(runtime) -> None:
    runtime.temporal = None
    with pytest.raises(RuntimeError, match="no Temporal client"):
        async with run_worker_in_background(runtime):
            pass


async def test_standalone_worker_process_runs_workflows_and_stops_on_sigterm(
    tmp_path, temporal_server
) -> None:
    """`helpdesk worker` (M replicas at scale): polls the configured queue, exits 0 on SIGTERM."""
    import asyncio
    import signal
    import subprocess
    import sys

    from helpdesk.settings import Settings
    from helpdesk.temporal import connect
    from tests.support.cli import cli_env

    var_dir = tmp_path / "var"
    queue = f"tq-worker-{uuid.uuid4().hex[:8]}"
    # Generates the development keys the worker process will share.
    settings = Settings(var_dir=var_dir, temporal_task_queue=queue)
    process = subprocess.Popen(
        [sys.executable, "-m", "helpdesk.cli", "worker"],
        env=cli_env(
            var_dir, HELPDESK_TEMPORAL_ADDRESS=temporal_server, HELPDESK_TEMPORAL_TASK_QUEUE=queue
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = await connect(settings, address=temporal_server)
        canary = f"CANARY-{uuid.uuid4().hex}"
        result = await asyncio.wait_for(
            client.execute_workflow(
                PingWorkflow.run, canary, id=f"ping-{uuid.uuid4().hex}", task_queue=queue
            ),
            timeout=60,
        )
        assert result == canary
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"worker polling task queue {queue}" in output
    assert "Traceback" not in output


def test_worker_without_a_reachable_temporal_exits_1(tmp_path) -> None:
    import subprocess
    import sys

    from tests.conftest import free_port
    from tests.support.cli import cli_env

    result = subprocess.run(
        [sys.executable, "-m", "helpdesk.cli", "worker"],
        env=cli_env(tmp_path / "var", HELPDESK_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot reach Temporal" in result.stderr
