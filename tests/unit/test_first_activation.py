"""workers.first_activation: a run's details hold copies, not parts of the activation that
started it (with upb, a part keeps the whole activation's memory alive)."""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
from pathlib import Path

from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.converter import DataConverter
from temporalio.worker import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

# The SDK's own placeholder info (what its runner validates definitions with).
from temporalio.worker.workflow_sandbox._runner import _fake_info

from workers.first_activation import FirstActivationRunner, detached_details
from workers.worker import workflow_runner

MB = 1024 * 1024


def _activation(size: int) -> bytes:
    act = WorkflowActivation()
    init = act.jobs.add().initialize_workflow
    init.arguments.add().data = b"x" * size  # the start input: what must not stay
    init.headers["mac"].data = b"signature"
    init.memo.fields["note"].data = b"memo"
    init.last_completion_result.payloads.add().data = b"last"
    return act.SerializeToString()


def _details(data: bytes) -> WorkflowInstanceDetails:
    act = WorkflowActivation()
    act.ParseFromString(data)
    init = act.jobs[0].initialize_workflow
    info = dataclasses.replace(
        _fake_info, headers=dict(init.headers), raw_memo=dict(init.memo.fields)
    )
    return WorkflowInstanceDetails(
        payload_converter_factory=DataConverter.default._new_payload_converter,
        failure_converter_class=DataConverter.default.failure_converter_class,
        interceptor_classes=[],
        defn=None,  # type: ignore[arg-type]
        info=info,
        randomness_seed=1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=init.last_completion_result,
        last_failure=None,
    )


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_copies_hold_the_same_values() -> None:
    det = _details(_activation(10))
    copy = detached_details(det)
    assert copy.info.headers == det.info.headers
    assert copy.info.headers["mac"] is not det.info.headers["mac"]
    assert copy.info.raw_memo == det.info.raw_memo
    assert copy.last_completion_result == det.last_completion_result
    assert copy.last_failure is None
    assert copy.info.workflow_id == det.info.workflow_id


def _growth() -> tuple[int, int]:
    """RSS growth (KB) of keeping ten runs' details: detached copies, then held parts."""
    data = _activation(4 * MB)
    gc.collect()
    start = _rss_kb()
    kept = [detached_details(_details(data)) for _ in range(10)]
    detached_growth = _rss_kb() - start
    held = [_details(data) for _ in range(10)]
    held_growth = _rss_kb() - start - detached_growth
    assert len(kept) == len(held) == 10
    return detached_growth, held_growth


def test_a_run_keeps_none_of_its_activation() -> None:
    # In a fresh process: in the suite's long-lived one, the allocator hands back memory
    # earlier tests freed, and RSS does not grow with what is held (seen in CI: 14.9 MB).
    out = subprocess.run(
        [sys.executable, "-m", "tests.unit.test_first_activation"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    detached_growth, held_growth = json.loads(out.stdout.strip().splitlines()[-1])
    # Held parts keep ten 4 MB activations; the copies keep a few hundred bytes each.
    assert held_growth > 30 * 1024, held_growth
    assert detached_growth < 8 * 1024, detached_growth


def test_the_worker_runs_workflows_with_it() -> None:
    runner = workflow_runner()
    assert isinstance(runner, FirstActivationRunner)
    assert isinstance(runner, SandboxedWorkflowRunner)  # the SDK's debug mode looks for it


if __name__ == "__main__":  # the measurement of test_a_run_keeps_none_of_its_activation
    print(json.dumps(_growth()))
