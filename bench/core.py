"""The ticket core's four figures of issue 12, each a ratio whose numerator and denominator
are measured in this one process, in the same run, on the same Temporal server:

    python -m bench.core [--tickets 1000] [--clients 16] [--latency-ops 200]
        [--cached-tickets 3000] [--breaching 500] [--breaching-small 100]
        [--floor-timers 500] [--sla-server memory|file] [--phases create,memory,sla]
        [--trace-dir DIR] [--quick]   (small sizes: the three phases in under two minutes)

Tickets are created only through the HTTP API (bench/http_load.py, a client process of its
own), and the trivial workflows only through the public Temporal client, so the bench holds
whichever side (API or workflow) writes a ticket's row. Each phase starts the embedded
default's pieces afresh (`bench.tickets.bench_stack`: a file-persisted WAL dev server, save
for the sla phase, a migrated SQLite database, the API under uvicorn in this process):

- create (the worker in this process beside the API, as `helpdesk dev` hosts it):
  `create_cpu_ratio` = CPU ms per ticket created through the API / CPU ms per trivial
  workflow (PingWorkflow started and run to completion by the same worker, `--clients` at a
  time, from this process through the public client), both counted over every process
  that serves: this one (API + worker, `_api_worker`) and the dev server's process tree
  (`_server`). The load client's CPU is reported apart (`create_cpu_ms_client`) and not
  counted. The raw side's Temporal client runs in this process, as the API's does.
  `create_p50_ratio` = p50 of a creation through the API with 4 concurrent clients / p50 of
  a raw `execute_update_with_start_workflow` of `BenchOpenWorkflow` (an update handler that
  returns at once) with 4 concurrent callers in this process, on a second worker of the same
  options in this process; the two alternate in rounds so they meet the same background.
- memory (the worker in a process of its own, `python -m bench.core --host-worker`, with
  `workflow_cache_size` >= `--cached-tickets` + the warm-up): `worker_kb_per_cached_ticket`
  = growth of that process's RSS (VmRSS, after a `gc.collect()` it runs on SIGUSR1, before
  and after) / the growth of its sticky cache (the SDK's `temporal_sticky_cache_size` gauge,
  which must reach the count of tickets created: each one's workflow is cached). A worker
  process of its own, so that nothing the API holds is counted. `--trace-dir DIR`: the
  worker runs tracemalloc and dumps a snapshot at each of the two measurements (for
  `python -m tracemalloc`-style diffs; RSS then counts the traces too).
- floor (not run by default; `--phases floor`): the memory phase's set-up and worker
  options with `bench.floor_workflow.FloorWorkflow` (waits as a ticket waits: a timer task,
  `wait_condition` with a timeout, an update started with it, a signal; no activities, no
  state) registered beside ours, `--cached-tickets` of them started by
  update-with-start through the public client: `floor_kb_per_cached_workflow`, what the SDK
  itself holds per cached run, the floor under `worker_kb_per_cached_ticket`.
  `--floor-signals K` then signals each K times (a history K workflow tasks longer);
  `--floor-input-kb N` adds N KB to each start input, `--floor-update-kb N` to each
  `opened` update's argument (what payloads held in history cost). Both
  memory phases also report the growth of malloc's bytes in use and of Python's allocated
  blocks per cached run (`*_malloc_in_use_kb_per_cached`, of it SQLite's `*_sqlite_kb_per_cached`,
  `*_python_blocks_per_cached`).
- sla (the worker in this process; policy minutes last a second; the dev server in memory
  as bench.sla and bench.timer_floor start it, or `--sla-server file`: persisted, where one
  run here under load 5-7 had the 500 bare timers at 10.2 s p99): `--floor-timers` bare
  timers firing at one instant (`bench.timer_floor.measure`) on this server, and
  `--breaching` CRITICAL and `--breaching-small` HIGH tickets created through the API while
  their business calendar is closed, so that each group's first-response clocks breach at
  one shared instant, the small group's `--sla-gap-seconds` after the large one's
  (escalation rules of those priorities are deleted, so the breach timer alone is measured;
  the bare timers fire while the calendar is still closed when they fit, else after the
  breaches, never at once). Lateness of a breach = its `sla.breached` history entry's time
  (read through `GET /tickets/{id}/history`) minus its due time.
  `sla_lateness_floor_ratio` = p99 lateness of the large group / p99 lateness of the bare
  timers; `sla_breach_p99_s_100` = p99 lateness of the small group (the key names the
  group's size).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from temporalio import workflow

from bench.sla import _percentile
from bench.tickets import (
    PROJECT_ROOT,
    Stack,
    _raw_rate,
    bench_stack,
    cpu_ms_per_item,
    http_load,
    tree_cpu_seconds,
)

PHASES = ("create", "memory", "floor", "sla")
T = TypeVar("T")


@workflow.defn(name="BenchOpen")
class BenchOpenWorkflow:
    """The trivial counterpart of a ticket's creation: an update that returns at once,
    sent with the workflow's start; the run ends once it has been handled."""

    def __init__(self) -> None:
        self._opened = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._opened)

    @workflow.update
    def opened(self, request_id: str) -> str:
        self._opened = True
        return request_id


# --- pure helpers --------------------------------------------------------------------


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator to 3 places, or None when either is missing or zero."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def p50_p99(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(statistics.median(values), 3), round(_percentile(values, 0.99), 3)


def kb_per_item(rss_before_kb: int, rss_after_kb: int, items: int) -> float | None:
    """RSS growth per item in KB (None when nothing was added)."""
    if items <= 0:
        return None
    return round((rss_after_kb - rss_before_kb) / items, 1)


def rss_kb(status: str) -> dict[str, int]:
    """VmRSS and RssAnon (KB) of one /proc/<pid>/status text."""
    found = {}
    for line in status.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            found[name] = int(rest.split()[0])
    return found


def _rss_of(pid: int) -> dict[str, int]:
    return rss_kb(Path(f"/proc/{pid}/status").read_text())


def gauge(metrics_text: str, name: str) -> float | None:
    """The sum of a Prometheus gauge's samples (all label sets) in an exposition text."""
    total: float | None = None
    for line in metrics_text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def breach_lateness(history: list[dict[str, Any]]) -> float | None:
    """Seconds from due time to the first `sla.breached` entry's time (or, without a due
    time in the entry, the lateness the workflow wrote into it), or None."""
    for entry in history:
        if entry.get("action") == "sla.breached":
            changes = entry.get("changes") or {}
            if "due_at" in changes:
                due = datetime.fromisoformat(str(changes["due_at"]))
                at = datetime.fromisoformat(str(entry["at"]))
                return (at - due).total_seconds()
            if "lateness_seconds" in changes:
                return float(changes["lateness_seconds"])
    return None


# --- phase: creation CPU and latency ---------------------------------------------------


def _cpu_sample(stack: Stack) -> dict[str, float]:
    server = stack.server_pid
    return {
        "api_worker": time.process_time(),
        "server": tree_cpu_seconds(server) if server is not None else 0.0,
    }


async def _raw_open(client: Any, task_queue: str, count: int, clients: int) -> list[float]:
    """Latencies (ms) of `count` update-with-starts of BenchOpenWorkflow, `clients` at once."""
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    from bench.core import BenchOpenWorkflow as Registered

    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def caller() -> None:
        while not queue.empty():
            queue.get_nowait()
            rid = f"open-{uuid.uuid4()}"
            t0 = time.perf_counter()
            await client.execute_update_with_start_workflow(
                Registered.opened,
                rid,
                start_workflow_operation=WithStartWorkflowOperation(
                    Registered.run,
                    id=f"bench-open-{rid}",
                    task_queue=task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                ),
            )
            latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(caller() for _ in range(clients)))
    return latencies


async def create_phase(
    tickets: int, clients: int, latency_ops: int, rounds: int = 2
) -> dict[str, Any]:
    from temporalio.worker import Worker

    from bench.core import BenchOpenWorkflow as Registered
    from helpdesk import heap
    from workers.worker import GRACEFUL_SHUTDOWN, worker_tuning, workflow_runner

    figures: dict[str, Any] = {"core_tickets": tickets, "core_clients": clients}
    async with bench_stack("core-create") as stack:
        settings, client = stack.settings, stack.client
        token = stack.tokens["requester"]
        raw_queue = f"{settings.temporal_task_queue}-open"
        # The trivial workflow's worker: the same options and sandbox as the ticket
        # worker's, its module passed through as the ticket workflow's is.
        runner = workflow_runner("bench", data_converter=client.data_converter)
        raw_worker = Worker(
            client,
            task_queue=raw_queue,
            workflows=[Registered],
            workflow_runner=runner,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            **worker_tuning(settings),
        )
        # Warm up both paths (sandbox imports, connection pools).
        await _raw_rate(client, settings.temporal_task_queue, 20, 8)
        await http_load(stack.base, token, 20, 8)
        heap.settle()  # as `helpdesk dev` does once it listens (helpdesk.heap)

        # CPU per trivial workflow, then per ticket through the API.
        load0 = os.getloadavg()[0]
        before = _cpu_sample(stack)
        raw_per_s = await _raw_rate(client, settings.temporal_task_queue, tickets, clients)
        raw = cpu_ms_per_item(before, _cpu_sample(stack), tickets)
        before = _cpu_sample(stack)
        made = await http_load(stack.base, token, tickets, clients)
        api = cpu_ms_per_item(before, _cpu_sample(stack), tickets)
        raw_total = round(sum(raw.values()), 2)
        api_total = round(sum(api.values()), 2)
        figures.update(
            create_cpu_ms_per_ticket=api_total,
            raw_cpu_ms_per_workflow=raw_total,
            create_cpu_ratio=ratio(api_total, raw_total),
            create_cpu_ms_api_worker=api["api_worker"],
            create_cpu_ms_server=api["server"],
            create_cpu_ms_client=round(float(made["cpu_s"]) * 1000 / tickets, 2),
            raw_cpu_ms_api_worker=raw["api_worker"],
            raw_cpu_ms_server=raw["server"],
            core_api_tickets_per_s=round(float(made["per_s"]), 1),
            core_raw_workflows_per_s=round(raw_per_s, 1),
            core_create_shed_answers=int(made["shed"]),
            core_load_during_create=round(max(load0, os.getloadavg()[0]), 2),
        )

        # The trivial update's worker runs only for the latency rounds (its idle pollers
        # stay out of the CPU figures).
        async with raw_worker:
            await _raw_open(client, raw_queue, 20, 4)
            # Latency with 4 clients: API creation vs raw update-with-start, in rounds.
            api_ms: list[float] = []
            raw_ms: list[float] = []
            per_round = max(1, latency_ops // rounds)
            for _ in range(rounds):
                raw_ms += await _raw_open(client, raw_queue, per_round, 4)
                answer = await http_load(stack.base, token, per_round, 4)
                api_ms += [float(ms) for ms in answer["latencies_ms"]]
            api_p50, api_p99 = p50_p99(api_ms)
            raw_p50, raw_p99 = p50_p99(raw_ms)
            figures.update(
                create_api_p50_ms=api_p50,
                create_api_p99_ms=api_p99,
                create_raw_uws_p50_ms=raw_p50,
                create_raw_uws_p99_ms=raw_p99,
                create_p50_ratio=ratio(api_p50, raw_p50),
                create_latency_n=len(api_ms),
            )
    return figures


# --- phase: worker memory per cached ticket ------------------------------------------------


def heap_kb() -> dict[str, int]:
    """glibc malloc's in-use and free bytes (KB; `mallinfo2`, all arenas: Python's large
    objects, the Rust core's, protobuf's and SQLite's allocations alike), SQLite's share of
    it (KB: its page caches, the activities' database connections in this process) and
    Python's own allocator's blocks in use (`sys.getallocatedblocks()`: a count)."""
    import _sqlite3
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    found = {"python_blocks": sys.getallocatedblocks()}
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
        info = libc.mallinfo2()
        found["malloc_in_use_kb"] = (info.uordblks + info.hblkhd) // 1024
        found["malloc_free_kb"] = info.fordblks // 1024
        sqlite = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
        sqlite.restype = ctypes.c_int64
        found["sqlite_kb"] = sqlite() // 1024
    except (OSError, AttributeError):
        pass
    return found


async def _host_worker(floor: bool) -> None:
    """`--host-worker`: the worker alone (`workers.worker.serve`, as `helpdesk worker`
    runs it), with settings from HELPDESK_*; SIGUSR1 runs a full collection and prints
    `collected` once done; SIGTERM stops it. `floor` (`--floor`): the same worker with
    `bench.floor_workflow` registered too. When tracemalloc traces (PYTHONTRACEMALLOC,
    `--trace-dir`), each collection also dumps a snapshot into BENCH_TRACE_DIR."""
    import tracemalloc

    from bench.floor_workflow import FloorWorkflow
    from helpdesk.runtime import build_runtime
    from helpdesk.services.sessions import prepare_runtime
    from helpdesk.settings import Settings
    from helpdesk.temporal import connect
    from workers.worker import serve

    settings = Settings()
    runtime = prepare_runtime(build_runtime(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    dumps = 0

    def collect() -> None:
        nonlocal dumps
        gc.collect()
        trace_dir = os.environ.get("BENCH_TRACE_DIR")
        if trace_dir and tracemalloc.is_tracing():
            dumps += 1
            tracemalloc.take_snapshot().dump(str(Path(trace_dir) / f"worker-{dumps}.snap"))
        print(f"heap {json.dumps(heap_kb())}", flush=True)
        print("collected", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, collect)
    try:
        runtime.temporal = await connect(settings)
        await serve(
            runtime, stop, settle_heap=True, extra_workflows=[FloorWorkflow] if floor else ()
        )
    finally:
        await runtime.close()


@contextlib.asynccontextmanager
async def _worker_process(
    stack: Stack, metrics_address: str, *, floor: bool = False, trace_dir: str | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = stack.environment(temporal_metrics_address=metrics_address)
    if trace_dir:
        frames = os.environ.get("BENCH_TRACE_FRAMES", "1")
        env.update(PYTHONTRACEMALLOC=frames, BENCH_TRACE_DIR=trace_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.core",
        "--host-worker",
        *(["--floor"] if floor else []),
        stdout=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _while_alive(proc: asyncio.subprocess.Process, work: Awaitable[T]) -> T:
    """`work`'s result, or an error as soon as the worker process ends."""
    task = asyncio.ensure_future(work)
    ended = asyncio.ensure_future(proc.wait())
    await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        raise RuntimeError(f"the worker process ended ({proc.returncode})")
    ended.cancel()
    return task.result()


async def _worker_state(
    proc: asyncio.subprocess.Process, metrics_url: str, http: httpx.AsyncClient
) -> dict[str, Any]:
    """RSS (KB) of the worker process after a full collection, and its sticky cache size."""
    assert proc.stdout is not None
    heap: dict[str, int] = {}
    proc.send_signal(signal.SIGUSR1)
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        if not line:
            raise RuntimeError("the worker process ended")
        if line.startswith(b"heap "):
            heap = json.loads(line[5:])
        if line.strip() == b"collected":
            break
    memory = _rss_of(proc.pid)
    cached = gauge((await http.get(metrics_url)).text, "temporal_sticky_cache_size")
    return {**memory, **heap, "cached": cached}


async def _floor_load(
    client: Any,
    task_queue: str,
    count: int,
    clients: int,
    signals: int = 0,
    input_kb: int = 0,
    update_kb: int = 0,
) -> None:
    """`count` FloorWorkflows started by update-with-start (as a ticket is), `clients` at
    once, through the public client, each with `input_kb` KB more of start input and
    `update_kb` KB more in the `opened` update's argument (not in its answer); then
    `signals` signals to each, one at a time per workflow (each adds a workflow task's
    events to its history)."""
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    from bench.floor_workflow import FloorWorkflow

    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def caller() -> None:
        while not queue.empty():
            queue.get_nowait()
            rid = str(uuid.uuid4())
            await client.execute_update_with_start_workflow(
                FloorWorkflow.opened,
                rid + "-" * (update_kb * 1024),
                start_workflow_operation=WithStartWorkflowOperation(
                    FloorWorkflow.run,
                    rid + "-" * (input_kb * 1024),
                    id=f"bench-floor-{rid}",
                    task_queue=task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                ),
            )
            handle = client.get_workflow_handle(f"bench-floor-{rid}")
            for _ in range(signals):
                await handle.signal(FloorWorkflow.poke)
                await handle.query(FloorWorkflow.changes)  # the signal's task is done

    await asyncio.gather(*(caller() for _ in range(clients)))


async def memory_phase(
    cached_tickets: int,
    clients: int,
    *,
    floor: bool = False,
    floor_signals: int = 0,
    floor_input_kb: int = 0,
    floor_update_kb: int = 0,
    trace_dir: str | None = None,
) -> dict[str, Any]:
    """`worker_kb_per_cached_ticket`, or with `floor` the same figure of FloorWorkflow
    (`floor_kb_per_cached_workflow`: the SDK's own cost per cached run) in the same
    set-up and worker options, started through the public client (and sent
    `floor_signals` signals each: a longer history)."""
    from bench.tickets import _free_port

    warm = 20
    metrics_address = f"127.0.0.1:{_free_port()}"
    async with (
        bench_stack(
            "core-floor" if floor else "core-memory",
            in_process_worker=False,
            workflow_cache_size=max(3000, cached_tickets + warm + 100),
        ) as stack,
        _worker_process(stack, metrics_address, floor=floor, trace_dir=trace_dir) as proc,
        httpx.AsyncClient(timeout=30) as http,
    ):
        token = stack.tokens["requester"]
        url = f"http://{metrics_address}/metrics"
        queue = stack.settings.temporal_task_queue

        async def load(count: int) -> int:
            if floor:
                await _floor_load(
                    stack.client,
                    queue,
                    count,
                    clients,
                    floor_signals,
                    floor_input_kb,
                    floor_update_kb,
                )
                return count
            made = await http_load(stack.base, token, count, clients)
            return len(made["ids"])

        # The worker is up and warm.
        await _while_alive(proc, load(warm))
        before = await _worker_state(proc, url, http)
        made = await _while_alive(proc, load(cached_tickets))
        await asyncio.sleep(1.0)  # the last activities' completions
        after = await _worker_state(proc, url, http)
    cached = (
        int(after["cached"] - before["cached"])
        if after["cached"] is not None and before["cached"] is not None
        else None
    )
    per = cached if cached is not None else cached_tickets
    heap = {
        f"{'floor' if floor else 'worker'}_{name}_per_cached": kb_per_item(
            before[name], after[name], per
        )
        for name in ("malloc_in_use_kb", "sqlite_kb", "python_blocks")
        if name in before and name in after
    }
    if floor:
        return {
            "floor_kb_per_cached_workflow": kb_per_item(before["VmRSS"], after["VmRSS"], per),
            "floor_anon_kb_per_cached_workflow": kb_per_item(
                before["RssAnon"], after["RssAnon"], per
            ),
            "floor_rss_before_mb": round(before["VmRSS"] / 1024, 1),
            "floor_rss_after_mb": round(after["VmRSS"] / 1024, 1),
            "floor_cached_workflows": cached,
            "floor_workflows_started": made,
            "floor_signals_each": floor_signals,
            "floor_input_kb": floor_input_kb,
            "floor_update_kb": floor_update_kb,
            **heap,
        }
    return {
        "worker_kb_per_cached_ticket": kb_per_item(before["VmRSS"], after["VmRSS"], per),
        "worker_anon_kb_per_cached_ticket": kb_per_item(before["RssAnon"], after["RssAnon"], per),
        "worker_rss_before_mb": round(before["VmRSS"] / 1024, 1),
        "worker_rss_after_mb": round(after["VmRSS"] / 1024, 1),
        "worker_cached_tickets": cached,
        "worker_tickets_created": made,
        **heap,
    }


# --- phase: SLA breach lateness against the timer floor ------------------------------------


async def _sla_setup(http: httpx.AsyncClient, opening: datetime, targets: dict[str, int]) -> None:
    """Through the admin API: a calendar opening at `opening` (a whole minute, UTC, every
    day), the policies of `targets` (priority: first-response seconds) on it, and no
    escalation rules for those priorities."""
    hhmm = opening.strftime("%H:%M")
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    r = await http.post(
        "/api/v1/business-calendars",
        json={
            "name": "bench",
            "time_zone": "UTC",
            "weekly_hours": {d: [[hhmm, "24:00"]] for d in days},
        },
    )
    r.raise_for_status()
    calendar_id = r.json()["id"]
    r = await http.get("/api/v1/sla-policies")
    r.raise_for_status()
    policies = {p["priority"]: p["id"] for p in r.json()}
    for priority, seconds in targets.items():
        body = {
            "priority": priority,
            "first_response_minutes": seconds,
            "resolution_minutes": seconds * 100,
            "calendar_id": calendar_id,
        }
        if priority in policies:
            r = await http.put(f"/api/v1/sla-policies/{policies[priority]}", json=body)
        else:
            r = await http.post("/api/v1/sla-policies", json=body)
        r.raise_for_status()
        r = await http.get("/api/v1/escalation-rules", params={"priority": priority})
        r.raise_for_status()
        for rule in r.json():
            (await http.delete(f"/api/v1/escalation-rules/{rule['id']}")).raise_for_status()


async def _lateness(http: httpx.AsyncClient, ids: list[str]) -> list[float]:
    gate = asyncio.Semaphore(8)

    async def one(ticket_id: str) -> float | None:
        async with gate:
            r = await http.get(f"/api/v1/tickets/{ticket_id}/history")
            r.raise_for_status()
            return breach_lateness(r.json())

    found = await asyncio.gather(*(one(t) for t in ids))
    return [v for v in found if v is not None]


async def sla_phase(
    floor_timers: int,
    breaching: int,
    breaching_small: int,
    clients: int,
    gap_seconds: float,
    lead_seconds: float | None,
    persisted: bool = False,
) -> dict[str, Any]:
    from bench import timer_floor
    from bench.sla import _cpu_seconds
    from bench.tickets import process_tree
    from workers.worker import worker_tuning

    target = 5  # seconds from the opening to the large group's breach
    async with bench_stack(
        "core-sla", persisted=persisted, sla_seconds_per_minute=1.0, auto_assign_on_create=False
    ) as stack:
        server = stack.server_pid
        pids = [os.getpid(), *(process_tree(server) if server is not None else [])]

        async def floor_now() -> dict[str, Any]:
            return await timer_floor.measure(
                stack.client, floor_timers, worker_tuning(stack.settings), pids=pids
            )

        total = breaching + breaching_small
        lead = timedelta(seconds=lead_seconds if lead_seconds is not None else 15 + total * 0.15)
        opening = (datetime.now(UTC) + lead + timedelta(minutes=1)).replace(second=0, microsecond=0)
        targets = {"CRITICAL": target, "HIGH": target + max(1, round(gap_seconds))}
        deadlines = {p: opening + timedelta(seconds=s) for p, s in targets.items()}
        admin = httpx.AsyncClient(base_url=stack.base, timeout=60, headers=stack.headers("admin"))
        async with admin:
            await _sla_setup(admin, opening, targets)
            token = stack.tokens["requester"]
            started = time.monotonic()
            large = await http_load(stack.base, token, breaching, clients, "CRITICAL")
            small = (
                await http_load(stack.base, token, breaching_small, clients, "HIGH")
                if breaching_small
                else {"ids": []}
            )
            creation_s = time.monotonic() - started
            created_before_opening = datetime.now(UTC) < opening
            # The bare timers while the calendar is still closed, when they fit (paced
            # starts at 25/s, 10 s of lead, the quiet wait and the history reads), else
            # after the breaches: never both at once.
            floor: dict[str, Any] | None = None
            floor_needs = timedelta(seconds=floor_timers / 25 + 40)
            if opening - datetime.now(UTC) > floor_needs:
                floor = await floor_now()
            floor_first = floor is not None
            quiet_before_small: bool | None = None
            breach_cpu: dict[str, float] = {}
            for priority in ("CRITICAL", "HIGH"):
                due = deadlines[priority]
                await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
                at_due = [_cpu_seconds(pid) for pid in pids]
                quiet = await timer_floor.wait_quiet(pids, due)
                if priority == "CRITICAL":
                    quiet_before_small = quiet < deadlines["HIGH"]
                    used = [_cpu_seconds(pid) - cpu for pid, cpu in zip(pids, at_due, strict=True)]
                    breach_cpu = {"worker": used[0], "server": sum(used[1:])}
            late_large = await _lateness(admin, list(large["ids"]))
            late_small = await _lateness(admin, list(small["ids"]))
            if floor is None:
                floor = await floor_now()
    floor_p99 = floor.get("floor_lateness_p99_s")
    large_p50, large_p99 = p50_p99(late_large)
    small_p50, small_p99 = p50_p99(late_small)
    return {
        "sla_lateness_floor_ratio": ratio(large_p99, floor_p99),
        f"sla_breach_p99_s_{breaching}": large_p99,
        f"sla_breach_p50_s_{breaching}": large_p50,
        f"sla_breach_p99_s_{breaching_small}": small_p99,
        f"sla_breach_p50_s_{breaching_small}": small_p50,
        "sla_breaches_large": len(late_large),
        "sla_breaches_small": len(late_small),
        "sla_floor_p99_s": floor_p99,
        "sla_floor_p50_s": floor.get("floor_lateness_p50_s"),
        "sla_floor_timers": floor_timers,
        # CPU from the due instant until all was quiet, per breach of the large group and
        # per bare timer: what the lateness ratio is made of (this process, then the server).
        "sla_cpu_ms_per_breach_worker": _per_ms(breach_cpu.get("worker"), breaching),
        "sla_cpu_ms_per_breach_server": _per_ms(breach_cpu.get("server"), breaching),
        "sla_floor_cpu_ms_per_timer_worker": _per_ms(floor.get("floor_cpu_worker_s"), floor_timers),
        "sla_floor_cpu_ms_per_timer_server": _per_ms(floor.get("floor_cpu_server_s"), floor_timers),
        "sla_floor_woken": floor.get("floor_woken"),
        "sla_core_creation_s": round(creation_s, 1),
        "sla_core_created_before_opening": created_before_opening,
        "sla_core_quiet_before_small_group": quiet_before_small,
        "sla_core_floor_first": floor_first,
        "sla_core_server": "file" if persisted else "memory",
    }


def _per_ms(seconds: float | None, count: int) -> float | None:
    """Seconds spent on `count` items as milliseconds per item (None without either)."""
    if seconds is None or count <= 0:
        return None
    return round(seconds * 1000 / count, 2)


# --- the whole run -----------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {sorted(unknown)} (known: {', '.join(PHASES)})")
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "core_load_before": os.getloadavg()[0]}
    if "create" in phases:
        figures.update(await create_phase(args.tickets, args.clients, args.latency_ops))
    if "memory" in phases:
        figures.update(
            await memory_phase(args.cached_tickets, args.clients, trace_dir=args.trace_dir)
        )
    if "floor" in phases:
        figures.update(
            await memory_phase(
                args.cached_tickets,
                args.clients,
                floor=True,
                floor_signals=args.floor_signals,
                floor_input_kb=args.floor_input_kb,
                floor_update_kb=args.floor_update_kb,
                trace_dir=args.trace_dir,
            )
        )
    if "sla" in phases:
        figures.update(
            await sla_phase(
                args.floor_timers,
                args.breaching,
                args.breaching_small,
                args.clients,
                args.sla_gap_seconds,
                args.sla_lead_seconds,
                persisted=args.sla_server == "file",
            )
        )
    figures["core_load_after"] = os.getloadavg()[0]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1000, help="for the CPU figures")
    parser.add_argument("--clients", type=int, default=16, help="creation concurrency")
    parser.add_argument("--latency-ops", type=int, default=200, help="each side, 4 clients")
    parser.add_argument("--cached-tickets", type=int, default=3000)
    parser.add_argument("--floor-timers", type=int, default=500)
    parser.add_argument("--breaching", type=int, default=500)
    parser.add_argument("--breaching-small", type=int, default=100)
    parser.add_argument("--sla-gap-seconds", type=float, default=30.0)
    parser.add_argument("--sla-lead-seconds", type=float, default=None)
    parser.add_argument(
        "--sla-server",
        choices=["memory", "file"],
        default="memory",
        help="the sla phase's dev server: in memory (as bench.sla, bench.timer_floor) or "
        "persisted with the WAL pragmas (as helpdesk dev)",
    )
    parser.add_argument("--phases", default="create,memory,sla", help=f"of {', '.join(PHASES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: under 2 minutes")
    parser.add_argument(
        "--trace-dir",
        default=None,
        help="memory, floor: the worker runs tracemalloc and dumps a snapshot here at each "
        "measurement (worker-1.snap before, worker-2.snap after); its RSS then counts the "
        "traces too",
    )
    parser.add_argument(
        "--floor-signals",
        type=int,
        default=0,
        help="floor: signals sent to each workflow once started (a longer history)",
    )
    parser.add_argument(
        "--floor-input-kb",
        type=int,
        default=0,
        help="floor: KB added to each workflow's start input (a ticket's is about 2)",
    )
    parser.add_argument(
        "--floor-update-kb",
        type=int,
        default=0,
        help="floor: KB added to each opened update's argument (not to its answer)",
    )
    parser.add_argument("--host-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.host_worker:
        from helpdesk import eventloop

        eventloop.run(_host_worker(args.floor))
        sys.stdout.flush()
        os._exit(0)  # sdk-python#300
    if args.quick:
        args.tickets, args.latency_ops, args.cached_tickets = 40, 20, 100
        args.floor_timers, args.breaching, args.breaching_small = 40, 40, 10
        args.sla_gap_seconds, args.sla_lead_seconds = 8.0, 5.0
    from helpdesk import eventloop

    figures = eventloop.run(run(args))
    print(json.dumps(figures, sort_keys=True), flush=True)
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: skip the interpreter finalisation that can crash


if __name__ == "__main__":
    main()
