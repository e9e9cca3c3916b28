"""Let a cached workflow run free the protobuf of its first activation.

The SDK (temporalio 1.35) keeps references into a run's first activation for the life of
the run: the workflow input's headers, `workflow.info()`'s headers and memo, the last
completion result and failure. With upb protobufs a reference to any part of a message
keeps the whole message's arena alive: for a ticket, its start input (TicketInput with the
sealed ticket), the `opened` update sent with it and both their headers. In `bench.core`
(1000 cached) that was about 28 KB of worker memory per cached ticket and 4 KB per cached
floor workflow.

`FirstActivationRunner` gives the SDK copies of those parts (each in an arena of its own,
a few hundred bytes) when it creates a run, and `FirstActivationRelease` does the same for
the workflow input's headers when the run starts, so the activation itself is freed once it
has been handled. The copies hold the same values: nothing a workflow or an interceptor
reads changes, and nothing enters history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.message import Message
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowInterceptorClassInput,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from workers.context_free import ContextFreeInstance

M = TypeVar("M", bound=Message)


def detached(message: M) -> M:
    """A copy of `message` that shares no memory with the message it is part of."""
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def detached_map(values: Mapping[str, M]) -> dict[str, M]:
    return {key: detached(value) for key, value in values.items()}


def detached_details(det: WorkflowInstanceDetails) -> WorkflowInstanceDetails:
    """`det` with its info's headers and memo, the last completion result and the last
    failure copied out of the activation they were read from."""
    info = dataclasses.replace(
        det.info, headers=detached_map(det.info.headers), raw_memo=detached_map(det.info.raw_memo)
    )
    return dataclasses.replace(
        det,
        info=info,
        last_completion_result=detached(det.last_completion_result),
        last_failure=detached(det.last_failure) if det.last_failure is not None else None,
    )


@dataclasses.dataclass(frozen=True)
class FirstActivationRunner(SandboxedWorkflowRunner):
    """The sandboxed runner, creating each run from details that hold no part of the
    activation that started it. `context_free`: each run answers the SDK's
    serialization-context questions without entering its sandbox
    (`workers.context_free`: only for a data converter that reads no context)."""

    context_free: bool = False

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        instance = super().create_instance(detached_details(det))
        return ContextFreeInstance(instance) if self.context_free else instance


class FirstActivationRelease(Interceptor):
    """Worker interceptor: the run keeps a copy of its start's headers, not the activation's
    own (the SDK keeps the input it passes to `execute_workflow` for the run's life)."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _ReleaseInbound


class _ReleaseInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        input.headers = detached_map(input.headers)
        return await super().execute_workflow(input)
