"""The app's worker for the comment tests."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from activities.registry import build_activities
from helpdesk.runtime import Runtime
from workers.worker import GRACEFUL_SHUTDOWN, workflow_runner
from workflows.registry import WORKFLOWS


def comment_worker(client: Client, runtime: Runtime) -> Worker:
    """The app's worker."""
    workflows = list(WORKFLOWS)
    return Worker(
        client,
        task_queue=runtime.settings.temporal_task_queue,
        workflows=workflows,
        activities=build_activities(runtime),
        workflow_runner=workflow_runner(),
        # As the app's worker: in-flight activities (notifications) finish their
        # transaction instead of being cancelled inside it when the test's block ends.
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )
