"""PingWorkflow: the smallest workflow, for smoke tests and the benchmark's raw rate.

It returns its input unchanged, so a test can prove that the payload codec encrypts what
enters the history and that our client reads it back, and the benchmark can measure what
the Temporal server alone sustains (no activity, no database).
"""

from __future__ import annotations

from temporalio import workflow


@workflow.defn(name="Ping")
class PingWorkflow:
    """Echo the input string."""

    @workflow.run
    async def run(self, message: str) -> str:
        return message
