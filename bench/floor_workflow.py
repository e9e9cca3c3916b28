"""The floor under `worker_kb_per_cached_ticket` (bench.core's `floor` phase): a workflow
that waits the way a ticket waits, and holds nothing of its own.

Like TicketWorkflow it is started by update-with-start (its `opened` update, with a
validator, answers at once), has a signal and an update handler, keeps one durable timer
running as a task (the ticket's SLA timer) and sleeps in `workflow.wait_condition` with a
timeout between changes. No activities, no state beyond two counters. A cached run of it
costs what the SDK itself holds per run (the Python workflow instance, its asyncio tasks,
the sandbox's per-run objects, Core's state machines) under the ticket worker's options.

The module imports only temporalio and the standard library and is passed through the
sandbox (as the ticket workflow's modules are), so its import is not counted per run.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow

# Far beyond any bench run: the timers stay pending while the runs are cached.
TIMER = timedelta(days=7)
WAIT = timedelta(days=30)


@workflow.defn(name="BenchFloor")
class FloorWorkflow:
    def __init__(self) -> None:
        self._opened = False
        self._changes = 0
        self._handled = 0

    @workflow.run
    async def run(self, request_id: str) -> None:
        del request_id
        timer = asyncio.create_task(workflow.sleep(TIMER, summary="floor timer"))
        while not timer.done():
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._changes != self._handled or timer.done(),
                    timeout=WAIT,
                    timeout_summary="floor wait",
                )
            self._handled = self._changes

    @workflow.update
    def opened(self, request_id: str) -> str:
        self._opened = True
        return request_id[:36]  # the id alone (the bench may pad the argument)

    @opened.validator
    def _validate_opened(self, request_id: str) -> None:
        del request_id

    @workflow.signal
    def poke(self) -> None:
        self._changes += 1

    @workflow.query
    def changes(self) -> int:
        return self._changes
