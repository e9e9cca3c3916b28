"""A tiny workflow that runs the email activity with a short retry policy, for tests that
prove which failures Temporal retries (a module of its own: the sandbox imports it)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notifications import NotificationActivities, NotifyInput

MAX_ATTEMPTS = 3


@workflow.defn
class NotifyOnceWorkflow:
    @workflow.run
    async def run(self, notify: NotifyInput) -> str:
        """`sent`/`duplicate`/... on success, else `failed:<error type>:<retry state>`."""
        try:
            result = await workflow.execute_activity_method(
                NotificationActivities.send_email,
                notify,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=100),
                    backoff_coefficient=1.0,
                    maximum_interval=timedelta(milliseconds=200),
                    maximum_attempts=MAX_ATTEMPTS,
                ),
            )
        except ActivityError as err:
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
            state = err.retry_state.name if err.retry_state is not None else "NONE"
            return f"failed:{kind}:{state}"
        return result.outcome
