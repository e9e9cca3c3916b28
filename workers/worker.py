"""The Temporal worker: ticket workflows and the activities around the process's Runtime.

Two ways to run it, same code: inside the API process (`run_worker_in_background`, the
embedded default of `helpdesk dev`) or as its own process (`helpdesk worker`, M replicas on
the same task queue at scale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.registry import build_activities
from helpdesk import command_auth, eventloop, heap, logs, metrics
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.services import attachment_scan, attachment_store, ticket_reconcile
from helpdesk.services.sessions import prepare_runtime
from helpdesk.settings import Settings, get_settings
from helpdesk.temporal import connect
from workers.audit_schedule import ensure_anchor_schedule_or_warn
from workers.command_guard import CommandGuard, audit_sink
from workers.context_free import ignores_activity_context
from workers.first_activation import FirstActivationRelease, FirstActivationRunner
from workflows.registry import WORKFLOWS

log = logging.getLogger("helpdesk.worker")

# Modules the workflow sandbox imports once from the host instead of re-importing per
# workflow run. They are deterministic to import (no I/O at import time) and heavy:
# re-importing SQLAlchemy's models for every ticket workflow would cost CPU and memory.
# Workflow modules themselves stay sandboxed, so their non-determinism is still caught.
PASSTHROUGH_MODULES = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "sqlalchemy",
    "cryptography",
    "models",
    "helpdesk",
    # The tracing interceptor's context propagation (TEMPORAL's OpenTelemetry guidance).
    "opentelemetry",
    # (helpdesk.rules, the pure rules and contracts, comes with "helpdesk".)
    # Reviewed workflow modules (the composed parts and their decisions): importing them once
    # instead of per workflow run is the main lever on ticket creation throughput (each run
    # re-compiled ~29 modules). Replay tests still guard their determinism.
    "workflows.local_first",
    "workflows.ticket_checks",
    "workflows.ticket_sla",
    "workflows.ticket_sla_notify",
    "workflows.ticket_comments",
    "workflows.ticket_host",
    "workflows.ticket_notify",
    # The TicketWorkflow module itself: re-executing it in a fresh sandbox for every new
    # ticket (class body, @workflow.defn's inspection of every handler) cost ~15 ms of the
    # event loop per creation, blocking the API beside it. Its code holds no module state;
    # determinism is guarded by review, the replay tests and the parts' pure cores.
    "workflows.ticket",
)

# How long in-flight activities may finish when the worker stops (each is one short
# transaction; anything cut off is retried by Temporal and is idempotent).
GRACEFUL_SHUTDOWN = timedelta(seconds=5)


def workflow_runner(
    *extra_passthrough: str, data_converter: DataConverter | None = None
) -> SandboxedWorkflowRunner:
    """The sandbox, with our deterministic libraries (and `extra_passthrough`) passed
    through; each run lets go of its first activation (`workers.first_activation`) and,
    when `data_converter` (the client's) reads no serialization context, skips the SDK's
    per-payload question for one (`workers.context_free`)."""
    return FirstActivationRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *PASSTHROUGH_MODULES, *extra_passthrough
        ),
        context_free=data_converter is not None and ignores_activity_context(data_converter),
    )


def worker_tuning(settings: Settings) -> dict[str, Any]:
    """The Worker options that size workflow-task processing, from the settings;
    `bench.timer_floor` measures a bare timer with exactly these. Workflow-task slots,
    activation threads and the sticky timeout stay at the SDK's defaults: none of them
    moved the timer floor or `bench.sla` beyond run-to-run noise here.

    The workflow cache is sized for a help desk's open tickets rather than the SDK's 1000:
    in `bench.tickets` (2000 tickets) a status update of a ticket evicted from the cache
    took about 100 ms through the API instead of 57, as the worker replayed its history
    first; 3000 tickets cached took about 280 MB more than 1000 did."""
    return {
        "max_cached_workflows": settings.workflow_cache_size,
        # More workflow-task pollers measurably raise throughput here (TEMPORAL.md).
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(
            maximum=settings.workflow_task_pollers
        ),
    }


def build_worker(
    client: Client,
    runtime: Runtime,
    *,
    task_queue: str | None = None,
    extra_workflows: Sequence[type] = (),
) -> Worker:
    """A worker registering every workflow of `workflows.registry` (and `extra_workflows`: a
    bench's own, their modules passed through the sandbox as ours are) and every activity
    of `activities.registry`, polling `task_queue` (default: the configured one)."""
    settings = runtime.settings
    # Commands without the API's MAC are refused, counted and audited (issue 11).
    command_auth.install_sink(audit_sink(runtime))
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=[*WORKFLOWS, *extra_workflows],
        activities=build_activities(runtime),
        interceptors=[
            FirstActivationRelease(),
            CommandGuard(settings.secret_bytes("command_key")),
        ],
        workflow_runner=workflow_runner(
            *(w.__module__ for w in extra_workflows), data_converter=client.data_converter
        ),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        **worker_tuning(settings),
    )


async def _resume_pending_scans(runtime: Runtime) -> None:
    """Attachments left PENDING by an outage get their scans arranged again (idempotent:
    a scan already running keeps its workflow id)."""
    try:
        resumed = await attachment_scan.resume_pending_scans(runtime)
    except Exception as exc:  # start-up must not fail on it; the next start retries
        log.warning("could not resume pending attachment scans: %s", type(exc).__name__)
        return
    if resumed:
        log.info("resumed %d pending attachment scans", resumed)


async def _close_stores(runtime: Runtime) -> None:
    await attachment_store.close(runtime)


@contextlib.asynccontextmanager
async def run_worker_in_background(
    runtime: Runtime, *, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """Run a worker as a task of the current loop (the API's lifespan); stop it on exit."""
    if runtime.temporal is None:
        raise RuntimeError("the runtime has no Temporal client; connect before starting a worker")
    worker = build_worker(runtime.temporal, runtime, task_queue=task_queue)
    task = asyncio.create_task(worker.run(), name="temporal-worker")
    await _resume_pending_scans(runtime)
    await ensure_anchor_schedule_or_warn(runtime.temporal, runtime.settings)
    stop_reconciling = asyncio.Event()
    reconciler = asyncio.create_task(
        ticket_reconcile.run_reconciler(runtime, stop_reconciling), name="ticket-reconciler"
    )
    try:
        yield worker
    finally:
        stop_reconciling.set()
        await reconciler
        if not task.done():
            await worker.shutdown()
        await _close_stores(runtime)
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            # The worker died earlier (e.g. the server went away for good): say so, but let
            # the rest of the shutdown proceed.
            log.exception("the Temporal worker had stopped with an error")


async def serve(
    runtime: Runtime,
    stop: asyncio.Event,
    *,
    settle_heap: bool = False,
    extra_workflows: Sequence[type] = (),
) -> None:
    """Run a worker until `stop` is set, then shut it down gracefully. `settle_heap`: once
    it polls, freeze start-up's objects out of the GC's walks (`helpdesk.heap`; the
    standalone worker process, whose start-up this is).

    Raises if the worker dies on its own (the process should exit non-zero and be restarted
    by its supervisor rather than linger without polling)."""
    if runtime.temporal is None:
        runtime.temporal = await connect(runtime.settings)
    worker = build_worker(runtime.temporal, runtime, extra_workflows=extra_workflows)
    task = asyncio.create_task(worker.run(), name="temporal-worker")
    await _resume_pending_scans(runtime)
    await ensure_anchor_schedule_or_warn(runtime.temporal, runtime.settings)
    # Rows whose workflow never started (a crash between commit and start) get one.
    reconciler = asyncio.create_task(
        ticket_reconcile.run_reconciler(runtime, stop), name="reconciler"
    )
    if settle_heap:
        heap.settle()
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        stopper.cancel()
        reconciler.cancel()
        task.result()
        raise RuntimeError("the Temporal worker stopped unexpectedly")
    await reconciler  # `stop` is set: it returns after its current round
    await worker.shutdown()
    await task


async def connect_or_explain(settings: Settings, command: str) -> Client | None:
    """Connect to Temporal, or print one clear line (no traceback) and return None."""
    try:
        return await connect(settings)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(
            f"helpdesk {command}: cannot reach Temporal at {settings.temporal_address} "
            f"(namespace {settings.temporal_namespace}): {reason}",
            file=sys.stderr,
            flush=True,
        )
        return None


async def _main() -> int:
    settings = get_settings()
    runtime = prepare_runtime(build_runtime(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker polling task queue %s at %s",
        settings.temporal_task_queue,
        settings.temporal_address,
    )
    if settings.metrics_port is not None:
        metrics.serve_worker_metrics(settings.metrics_host, settings.metrics_port)
    try:
        runtime.temporal = await connect_or_explain(settings, "worker")
        if runtime.temporal is None:
            return 1
        await serve(runtime, stop, settle_heap=True)
    except RuntimeError as exc:
        log.error("worker stopped: %s", exc)
        return 1
    finally:
        await runtime.close()
    return 0


def main() -> int:
    """`helpdesk worker`: a standalone worker process until SIGINT/SIGTERM."""
    logs.configure(get_settings().effective_log_format)
    return eventloop.run(_main())
