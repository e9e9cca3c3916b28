"""Timer floor: how late does a bare durable timer fire when many fire at the same second?

    python -m bench.timer_floor [--workflows 500] [--max-concurrent-workflow-tasks N]
        [--pollers N] [--max-cached-workflows N] [--sticky-timeout-seconds S]
        [--executor-threads N] [--sticky-ratio R] [--start-rate 25]

The floor under `bench.sla`: the same set-up (a real in-memory Temporal dev server started
like `bench.sla` starts it, a worker in this process with the options of
`workers.worker.worker_tuning`, the sandboxed runner with our passthrough modules, the same
data converter), but each workflow only waits until one shared instant, the way the ticket
workflow waits for its next SLA event, then notes `workflow.now()` (its workflow task's
start: what `bench.sla` calls lateness) and the wall clock at which the worker's Python code
ran the wake-up. No activity, no command after waking, no database.

From each workflow's history the lateness is split up: how long after the task that set the
timer started the server took the timer (the timer runs from there, not from that task's
`workflow.now()`), how late the server fired it, and how long the fired timer's workflow
task waited for the worker. Options override the configured worker options, to see which
of them moves the floor. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow


@dataclass(frozen=True)
class Wake:
    """What one workflow saw when its timer fired (epoch seconds)."""

    workflow_now: float
    worker_wall: float


@workflow.defn(name="BenchTimerFloor")
class TimerFloorWorkflow:
    """Wait until `wake_at` (a wait with a timeout, like the ticket workflow's main loop),
    note when the workflow and the worker saw the wake-up, then stay open doing nothing."""

    def __init__(self) -> None:
        self._wake: Wake | None = None

    @workflow.run
    async def run(self, wake_at: datetime) -> None:
        remaining = wake_at - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(lambda: False, timeout=remaining)
            except TimeoutError:
                pass
        with workflow.unsafe.sandbox_unrestricted():
            wall = time.time()  # a measurement only: it decides nothing
        self._wake = Wake(workflow_now=workflow.now().timestamp(), worker_wall=wall)
        # No command after waking (no completion either): the wake-up's task is the timer
        # alone. The figures are read by query once everything has gone quiet.
        await workflow.wait_condition(lambda: False)

    @workflow.query
    def wake(self) -> Wake | None:
        return self._wake


@dataclass(frozen=True)
class Timeline:
    """One wake-up's events from history (epoch seconds)."""

    task_started_before_timer: float  # the task that set the timer (its workflow.now())
    timer_started: float  # when the server took the timer (that task's completion)
    timer_due: float  # timer_started + its duration: when the server means to fire it
    fired: float
    task_started: float | None  # the wake-up's task (workflow.now() after waking)
    task_completed: float | None


async def _timeline(handle: Any) -> Timeline | None:
    started_at = timer_started = timer_due = fired = None
    task_started = task_completed = None
    async for event in handle.fetch_history_events():
        name = event.WhichOneof("attributes")
        at = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
        if name == "workflow_task_started_event_attributes":
            if fired is None:
                started_at = at
            elif task_started is None:
                task_started = at
        elif name == "timer_started_event_attributes":
            timeout = event.timer_started_event_attributes.start_to_fire_timeout
            timer_started, timer_due = at, at + timeout.ToTimedelta().total_seconds()
        elif name == "timer_fired_event_attributes":
            fired = at
        elif task_started is not None and name == "workflow_task_completed_event_attributes":
            task_completed = at
            break
    if started_at is None or timer_started is None or timer_due is None or fired is None:
        return None
    return Timeline(started_at, timer_started, timer_due, fired, task_started, task_completed)


def _shown(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)


async def wait_quiet(
    pids: list[int], since: datetime, limit_s: float = 300.0, idle_s: float = 1.0
) -> datetime:
    """Wait until the processes `pids` have together used under 50 ms of CPU per quarter
    second for `idle_s`; return when that quiet began (or now, `limit_s` after `since`).
    Nothing is asked of the server meanwhile: that would load it during the measurement."""
    from .sla import _cpu_seconds

    def used() -> float:
        total = 0.0
        for pid in pids:
            try:
                total += _cpu_seconds(pid)
            except OSError:
                continue
        return total

    cpu = used()
    quiet_since: datetime | None = None
    while datetime.now(UTC) < since + timedelta(seconds=limit_s):
        await asyncio.sleep(0.25)
        now_cpu = used()
        spent, cpu = now_cpu - cpu, now_cpu
        if spent > 0.05:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = datetime.now(UTC)
        elif datetime.now(UTC) - quiet_since >= timedelta(seconds=idle_s):
            break
    return quiet_since or datetime.now(UTC)


async def run(
    workflows: int = 500,
    overrides: dict[str, Any] | None = None,
    lead_seconds: float | None = None,
    start_rate: float = 25.0,
) -> dict[str, Any]:
    """Run the experiment on an in-memory dev server of its own; returns the figures (see
    the module docstring)."""
    from temporalio.testing import WorkflowEnvironment

    from helpdesk.settings import Settings
    from helpdesk.temporal import SEARCH_ATTRIBUTES, connect
    from workers.worker import worker_tuning

    from .sla import _children, _free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-timer-"))
    settings = Settings(environment="test", var_dir=tmp)
    options: dict[str, Any] = {**worker_tuning(settings), **(overrides or {})}
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        ip="127.0.0.1",
        port=_free_port(),
        ui=False,
        search_attributes=list(SEARCH_ATTRIBUTES),
    )
    try:
        client = await connect(settings, address=env.client.service_client.config.target_host)
        return await measure(
            client,
            workflows,
            options,
            lead_seconds=lead_seconds,
            start_rate=start_rate,
            pids=[os.getpid(), *_children()],
        )
    finally:
        await env.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


async def measure(
    client: Any,
    workflows: int,
    options: dict[str, Any],
    *,
    lead_seconds: float | None = None,
    start_rate: float = 25.0,
    pids: list[int],
) -> dict[str, Any]:
    """The experiment on the server `client` reaches, with a worker of `options` in this
    process on a task queue of its own; `pids` (this process first, then the server's) are
    watched for CPU and quiet. Returns the figures (see the module docstring)."""
    from temporalio.worker import Worker

    # The class as imported by its module's name: the sandbox re-imports a workflow's
    # module by name, which `__main__` is not.
    from bench.timer_floor import TimerFloorWorkflow as Registered
    from workers.worker import GRACEFUL_SHUTDOWN, workflow_runner

    from .sla import _cpu_seconds, _summary

    task_queue = f"bench-timer-{uuid.uuid4().hex[:6]}"
    lead = lead_seconds if lead_seconds is not None else 10 + workflows / start_rate
    wake_at = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[Registered],
        workflow_runner=workflow_runner(data_converter=client.data_converter),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        **options,
    )
    async with worker:
        prefix = f"timer-floor-{uuid.uuid4().hex[:6]}"
        began = time.monotonic()

        async def start(n: int) -> Any:
            # Paced: each workflow's first task (which sets the timer) runs on a calm
            # worker, so the timer starts close to the workflow.now() it was computed at.
            await asyncio.sleep(max(0.0, began + n / start_rate - time.monotonic()))
            return await client.start_workflow(
                Registered.run, wake_at, id=f"{prefix}-{n}", task_queue=task_queue
            )

        handles = await asyncio.gather(*(start(n) for n in range(workflows)))
        start_s = time.monotonic() - began
        started_before = datetime.now(UTC) < wake_at
        load_before = os.getloadavg()
        await asyncio.sleep(max(0.0, (wake_at - datetime.now(UTC)).total_seconds()))
        cpu_at_deadline = [_cpu_seconds(pid) for pid in pids]
        # Done once worker and server have been idle for a second.
        quiet = await wait_quiet(pids, wake_at)
        cpu_used = [_cpu_seconds(pid) - at for pid, at in zip(pids, cpu_at_deadline, strict=True)]
        load_after = os.getloadavg()
        queried = await asyncio.gather(*(h.query(Registered.wake) for h in handles))
        wakes: list[Wake] = [w for w in queried if w is not None]

    fetch = asyncio.Semaphore(16)

    async def timeline(handle: Any) -> Timeline | None:
        async with fetch:
            return await _timeline(handle)

    found = await asyncio.gather(*(timeline(h) for h in handles))
    timelines = [t for t in found if t is not None]

    deadline = wake_at.timestamp()
    return {
        **_summary("floor_lateness", [w.workflow_now - deadline for w in wakes]),
        **_summary("floor_worker_wall", [w.worker_wall - deadline for w in wakes]),
        # The timer's duration was computed at its task's start (workflow.now()), but the
        # server starts it only when that task completes: the wake-up is late by as much.
        **_summary(
            "floor_timer_set_offset",
            [t.timer_started - t.task_started_before_timer for t in timelines],
        ),
        **_summary("floor_timer_fired_after_due", [t.fired - t.timer_due for t in timelines]),
        **_summary("floor_timer_fired", [t.fired - deadline for t in timelines]),
        **_summary(
            "floor_fired_to_task_started",
            [t.task_started - t.fired for t in timelines if t.task_started is not None],
        ),
        **_summary(
            "floor_task_completed",
            [t.task_completed - deadline for t in timelines if t.task_completed is not None],
        ),
        "floor_quiet_after_deadline_s": round(quiet.timestamp() - deadline, 3),
        "floor_woken": len(wakes),
        "floor_workflows": workflows,
        # CPU seconds from the deadline until all was quiet.
        "floor_cpu_worker_s": round(cpu_used[0], 2),
        "floor_cpu_server_s": round(sum(cpu_used[1:]), 2),
        "floor_started_before_deadline": started_before,
        "floor_start_s": round(start_s, 1),
        "worker_options": {k: _shown(v) for k, v in options.items()},
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(load_after[0], 2),
        "cpus": os.cpu_count(),
    }


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import PollerBehaviorSimpleMaximum

    found: dict[str, Any] = {}
    if args.max_concurrent_workflow_tasks is not None:
        found["max_concurrent_workflow_tasks"] = args.max_concurrent_workflow_tasks
    if args.pollers is not None:
        found["workflow_task_poller_behavior"] = PollerBehaviorSimpleMaximum(maximum=args.pollers)
    if args.max_cached_workflows is not None:
        found["max_cached_workflows"] = args.max_cached_workflows
    if args.sticky_timeout_seconds is not None:
        found["sticky_queue_schedule_to_start_timeout"] = timedelta(
            seconds=args.sticky_timeout_seconds
        )
    if args.executor_threads is not None:
        found["workflow_task_executor"] = ThreadPoolExecutor(
            max_workers=args.executor_threads, thread_name_prefix="workflow-task"
        )
    if args.sticky_ratio is not None:
        found["nonsticky_to_sticky_poll_ratio"] = args.sticky_ratio
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workflows", type=int, default=500)
    parser.add_argument("--lead-seconds", type=float, default=None)
    parser.add_argument("--start-rate", type=float, default=25.0, help="workflows started/s")
    parser.add_argument("--max-concurrent-workflow-tasks", type=int, default=None)
    parser.add_argument("--pollers", type=int, default=None)
    parser.add_argument("--max-cached-workflows", type=int, default=None)
    parser.add_argument("--sticky-timeout-seconds", type=float, default=None)
    parser.add_argument("--executor-threads", type=int, default=None)
    parser.add_argument("--sticky-ratio", type=float, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.workflows, _overrides(args), args.lead_seconds, args.start_rate))
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: leave without finalising the Temporal core (TEMPORAL.md)


if __name__ == "__main__":
    main()
