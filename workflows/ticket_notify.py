"""Sending a change's notifications from workflow code: `send_all` runs the inputs that
`helpdesk.rules.notify.notifications_for` chose (the table of who hears of what, and the
keys that make a retry or a replay send nothing twice, are documented there) as ONE local
activity attempt first, the regular `notify_change` activity with retries if that failed.
Never raises for an undeliverable notification."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from helpdesk.rules.activity_contracts import ActivityName
    from helpdesk.rules.notify import Notification, NotifyBatch, NotifyInput, PushInput

# A change's notifications run as ONE activity (`notify_change`), not one per email and push,
# and as a LOCAL activity first, inside the workflow task already running (no activity task,
# no second workflow task: a new ticket costs the Temporal server one workflow task, as a
# trivial workflow does); a failed local attempt falls back to the regular activity.
# How long the local attempt may take: as long as one attempt of the activity (a cut-off
# send keeps its claim, at most once, so a shorter limit would lose slow providers' mail).
# A local activity running past ~8 s makes the SDK complete the workflow task anyway (its
# heartbeat), so the creation answers by then.
LOCAL_NOTIFY_TIMEOUT = timedelta(seconds=30)


# --- sending, from the workflow's main loop ----------------------------------------------

# Short: a notification that cannot go out soon is not worth holding the ticket's main loop
# (and its SLA timers) for. A permanent refusal (bad address) is not retried at all.
EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=["EmailPermanentError"],
)
PUSH_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=3,
)


async def send_all(notifications: Sequence[Notification]) -> list[str]:
    """Run the notification activity of one change from workflow code: ONE local attempt
    first (`send_batch_local`), the regular activity with its retries if that failed.

    Returns one outcome per input (``sent``/``duplicate``/``skipped``/``uncertain`` for an
    email, ``pushed`` for a push, ``failed`` when the activity gave up). Never raises for a
    failed notification: an undeliverable email or an unreachable Socket.IO fan-out must not
    fail the ticket (or the attachment scan)."""
    if not notifications:
        return []
    outcomes = await send_batch_local(notifications)
    if outcomes is not None:
        return outcomes
    return await send_batch(notifications)


def _batch(notifications: Sequence[Notification]) -> tuple[NotifyBatch, list[str], list[int]]:
    """The activity input for one change, its kinds (for the summary) and the inputs' ids
    in the order the activity answers (pushes, then emails)."""
    pushes = [n for n in notifications if isinstance(n, PushInput)]
    emails = [n for n in notifications if isinstance(n, NotifyInput)]
    kinds = sorted({n.kind.value for n in emails} | {n.event.value for n in pushes})
    return NotifyBatch(emails=emails, pushes=pushes), kinds, [id(n) for n in pushes + emails]


def _in_input_order(
    notifications: Sequence[Notification], order: list[int], outcomes: list[str]
) -> list[str]:
    by_input = dict(zip(order, outcomes, strict=False))
    return [by_input.get(id(n), "failed") for n in notifications]


async def send_batch_local(notifications: Sequence[Notification]) -> list[str] | None:
    """`send_batch` as ONE local activity attempt (bounded by LOCAL_NOTIFY_TIMEOUT), run by
    this worker inside the current workflow task. None when it did not succeed: the caller
    then runs the regular activity, which retries (what already went out answers
    ``duplicate``; a repeated push carries the same event id)."""
    batch, kinds, order = _batch(notifications)
    try:
        outcomes = await workflow.execute_local_activity(
            ActivityName.NOTIFY_CHANGE,
            batch,
            result_type=list[str],
            start_to_close_timeout=LOCAL_NOTIFY_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=1),
            summary="Notify: " + ", ".join(kinds),
        )
    except CancelledError:
        raise
    except FailureError as err:
        # A local activity's failure may arrive unwrapped (the activity's own error, or a
        # timeout), not as an ActivityError.
        cause = err.cause if isinstance(err, ActivityError) else err
        reason = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            workflow.logger.warning("notifications %s not delivered: %s", kinds, reason)
            return ["failed"] * len(notifications)
        workflow.logger.info("local notification attempt failed (%s); retrying", reason)
        return None
    return _in_input_order(notifications, order, outcomes)


async def send_batch(notifications: Sequence[Notification]) -> list[str]:
    """All of one change's notifications in one `notify_change` activity. Outcomes in
    input order; never raises."""
    batch, kinds, order = _batch(notifications)
    try:
        outcomes = await workflow.execute_activity(
            ActivityName.NOTIFY_CHANGE,
            batch,
            result_type=list[str],
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=2),
            retry_policy=EMAIL_RETRY,
            summary="Notify: " + ", ".join(kinds),
        )
    except ActivityError as err:
        cause = err.cause
        reason = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
        workflow.logger.warning("notifications %s not delivered: %s", kinds, reason)
        return ["failed"] * len(notifications)
    return _in_input_order(notifications, order, outcomes)
