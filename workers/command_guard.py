"""The worker's side of command authentication (`helpdesk.command_auth`): a workflow
interceptor that refuses any update, signal or start without a valid, fresh MAC.

- Updates: checked in the validator, so a refused update is rejected before it is accepted
  and leaves nothing in history (every ticket update has a validator, `opened` included);
  checked again in the handler of an update without a validator (not on replay).
- Signals: an unsigned signal is dropped (no ticket workflow has signal handlers today).
- Starts: of the workflows the API starts (`GUARDED_STARTS`); a continued run (started by
  the workflow's own continue-as-new) and scheduled workflows are the server's doing. A
  refused start fails at once with `CommandRefused`.

Time: the worker's clock for updates and signals (checked only when first delivered), the
start's own time (the server's) for a start, so a start delivered late to a worker that was
down is not refused. Nothing is checked again on replay, so a rotated key never breaks an old
history.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from helpdesk import command_auth
from helpdesk.command_auth import Refusal
from helpdesk.context import RequestContext, set_context

# Workflow types the API starts (by update-with-start or start): their starts must be signed.
GUARDED_STARTS = frozenset({"TicketWorkflow", "AttachmentScan"})
REFUSED = "CommandRefused"


class CommandGuard(Interceptor):
    """Worker interceptor checking every inbound command against the command key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        key = self._key

        class _Bound(_GuardInbound):
            _command_key = key

        return _Bound


def _now_ms() -> int:
    """The worker's clock: updates and signals are checked only when first delivered
    (validators never replay; the other checks are skipped on replay), so wall-clock time
    is deterministic enough, and unlike `workflow.now()` it does not jump with a
    time-skipping test server."""
    return int(time.time() * 1000)


def _refuse(kind: str, reason: str, command: str, args: Any) -> Refusal:
    claims = command_auth.claims_of(workflow.info().workflow_id, command, args, 0)
    refusal = Refusal(
        kind=kind,
        reason=reason,
        workflow_id=claims.workflow_id,
        command=command,
        actor_id=claims.actor_id,
        role=claims.role,
    )
    if not workflow.unsafe.is_replaying():
        command_auth.refused(refusal)
    return refusal


class _GuardInbound(WorkflowInboundInterceptor):
    _command_key: bytes = b""

    def _check(self, headers: Any, command: str, args: Any, now_ms: int) -> str | None:
        return command_auth.verify(
            self._command_key, headers, workflow.info().workflow_id, command, args, now_ms
        )

    def handle_update_validator(self, input: HandleUpdateInput) -> None:
        reason = self._check(input.headers, input.update, input.args, _now_ms())
        if reason is not None:
            _refuse("update", reason, input.update, input.args)
            raise ApplicationError("command refused", type=REFUSED, non_retryable=True)
        super().handle_update_validator(input)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        if not workflow.unsafe.is_replaying():
            reason = self._check(input.headers, input.update, input.args, _now_ms())
            if reason is not None:
                _refuse("update", reason, input.update, input.args)
                raise ApplicationError("command refused", type=REFUSED, non_retryable=True)
        return await super().handle_update_handler(input)

    async def handle_signal(self, input: HandleSignalInput) -> None:
        if not workflow.unsafe.is_replaying():
            reason = self._check(input.headers, input.signal, input.args, _now_ms())
            if reason is not None:
                _refuse("signal", reason, input.signal, input.args)
                return  # dropped
        await super().handle_signal(input)

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        info = workflow.info()
        if (
            info.workflow_type in GUARDED_STARTS
            and info.continued_run_id is None
            and not workflow.unsafe.is_replaying()
        ):
            started_ms = int(info.start_time.timestamp() * 1000)
            reason = self._check(input.headers, info.workflow_type, input.args, started_ms)
            if reason is not None:
                _refuse("start", reason, info.workflow_type, input.args)
                raise ApplicationError("command refused", type=REFUSED, non_retryable=True)
        return await super().execute_workflow(input)


def audit_sink(runtime: Any) -> command_auth.Sink:
    """Write each refusal as a `security.command_refused` audit row (denied), with the ids
    and reason codes only. The actor the command claimed is unauthenticated: it goes in the
    details, never as the row's actor."""

    async def sink(refusal: Refusal) -> None:
        set_context(RequestContext(request_id=f"refused-{uuid.uuid4().hex[:16]}"))
        record_id = refusal.workflow_id.removeprefix("ticket-") or None
        try:
            async with runtime.database.transaction() as session:
                await runtime.audit.record(
                    session,
                    "security.command_refused",
                    outcome="denied",
                    table="tickets" if refusal.workflow_id.startswith("ticket-") else None,
                    record_id=record_id,
                    details={
                        "kind": refusal.kind,
                        "reason": refusal.reason,
                        "workflow_id": refusal.workflow_id,
                        "command": refusal.command,
                        "claimed_actor_id": refusal.actor_id or None,
                        "claimed_role": refusal.role or None,
                    },
                )
        except Exception as exc:  # an audit that cannot be written is logged, never raised
            command_auth.log.error("refused command not audited: %s", type(exc).__name__)

    return sink
