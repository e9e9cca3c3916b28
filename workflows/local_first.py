"""Run a short activity as ONE local attempt first, and as a regular activity only if that
attempt fails.

Why: a regular activity costs the ticket's history three events (scheduled, started,
completed) and, when it completes, a workflow task of three more; a local activity that
succeeds costs one marker inside the workflow task that is running anyway. The main loop's
side effects of a change (SLA records, notifications, policy look-ups) are short, idempotent
transactions, so running them locally cut an ordinary ticket's history by about a third
(tests/replay/test_history_size.py). A failed local attempt falls back to the regular activity with
its own retry policy, so nothing loses its retries.

The cost: while a local activity runs, the workflow task stays open and an update to the
same ticket waits for it (bounded by `start_to_close`, a single attempt).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from helpdesk.rules.activity_contracts import ActivityName

_ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
T = TypeVar("T")


def failure_type(err: BaseException) -> str | None:
    """The ApplicationError type behind an activity failure, local or regular."""
    cause = err.cause if isinstance(err, ActivityError) else err
    return cause.type if isinstance(cause, ApplicationError) else None


async def run(
    activity: ActivityName,
    arg: Any,
    *,
    result_type: type[T],
    start_to_close: timedelta,
    retry_policy: RetryPolicy,
    summary: str,
    final: frozenset[str] = frozenset(),
    schedule_to_close: timedelta | None = None,
) -> T:
    """`activity(arg)` as one local attempt, then (if it failed with a type not in `final`)
    as a regular activity with `retry_policy`. A failure of a type in `final` is raised at
    once, as an ActivityError would be (what retrying cannot fix: a deleted ticket)."""
    try:
        return await workflow.execute_local_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=start_to_close,
            retry_policy=_ONE_ATTEMPT,
            summary=summary,
        )
    except CancelledError:
        raise
    except FailureError as err:
        kind = failure_type(err)
        if kind is not None and kind in final:
            raise
        workflow.logger.info("local attempt of %s failed (%s); retrying", summary, kind)
    return await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=start_to_close,
        schedule_to_close_timeout=schedule_to_close,
        retry_policy=retry_policy,
        summary=summary,
    )
