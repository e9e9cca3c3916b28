"""Answer the SDK's per-payload serialization-context question without entering the
sandbox, where the answer cannot change what our data converter does.

temporalio 1.35 asks a sandboxed workflow run, for every payload of every command and
activation it encodes or decodes, which serialization context applies: the workflow's
own, or an activity's, a child's, ... Each question is an `exec` of a snippet compiled
afresh inside the sandbox with its importer applied: in `bench.core` about 30 per ticket
created, some 6% of the API-and-worker process's CPU; as many again ask where external
storage would keep the payload (we configure none).

Our data converter (`helpdesk.temporal.data_converter`) reads one context only: the
encryption codec takes a workflow's id (to name it when it refuses a plaintext payload).
An activity's context leaves every part of it as it is, so the SDK then encodes with the
context-free converter, which is what answering None selects. `ContextFreeInstance`
answers so for activity commands (local or not), and the workflow's own context for
payloads of no command or of its own commands (as the SDK does), without entering the
sandbox; the rarer commands whose context names
another workflow (child, external signal, Nexus) still ask the run. The store context is
answered the same way: this run, except for commands that name another workflow. The answers, and so
every payload, are the SDK's own; `workers.worker.workflow_runner` wraps runs only for a
converter that `ignores_activity_context` confirms this for.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import CommandType
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WorkflowSerializationContext,
)
from temporalio.worker import WorkflowInstance
from temporalio.workflow import Info

# Commands whose payloads are stored (external storage) for another workflow.
_ASK_THE_RUN_TO_STORE = frozenset(
    {
        CommandType.COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION,
        CommandType.COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION,
        CommandType.COMMAND_TYPE_COMPLETE_WORKFLOW_EXECUTION,  # a child's result: its parent's
    }
)

# Commands whose payloads take the context of another workflow or an operation.
_ASK_THE_RUN = frozenset(
    {
        CommandType.COMMAND_TYPE_START_CHILD_WORKFLOW_EXECUTION,
        CommandType.COMMAND_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION,
        CommandType.COMMAND_TYPE_SCHEDULE_NEXUS_OPERATION,
    }
)


def ignores_activity_context(converter: DataConverter) -> bool:
    """True when `converter` answers an activity's serialization context with itself (no
    part of it reads one), local or not."""
    return all(
        converter.with_context(
            ActivitySerializationContext(
                namespace="probe",
                activity_id="probe",
                activity_type="probe",
                activity_task_queue="probe",
                workflow_id="probe",
                workflow_type="probe",
                is_local=is_local,
            )
        )
        is converter
        for is_local in (False, True)
    )


class ContextFreeInstance(WorkflowInstance):
    """A workflow run whose serialization-context answers for its own payloads and its
    activities' are made here (see the module docstring); everything else is the wrapped
    run's."""

    def __init__(self, inner: WorkflowInstance) -> None:
        self.inner = inner
        info = inner.get_info()
        self._own = WorkflowSerializationContext(
            namespace=info.namespace, workflow_id=info.workflow_id
        )
        self._own_store = StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(
                id=info.workflow_id,
                run_id=info.run_id,
                type=info.workflow_type,
                namespace=info.namespace,
            )
        )

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        return self.inner.activate(act)

    def get_serialization_context(self, command_info: object) -> SerializationContext | None:
        kind = getattr(command_info, "command_type", None)
        if kind == CommandType.COMMAND_TYPE_SCHEDULE_ACTIVITY_TASK:
            return None  # an activity's context, which our converter answers with itself
        if kind in _ASK_THE_RUN:
            return self.inner.get_serialization_context(command_info)  # type: ignore[arg-type]
        return self._own  # no command, or one of the workflow's own (as the SDK answers)

    def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
        """Where external storage would keep a payload: this run, as the SDK answers for
        every command but those naming another workflow (asked of the run)."""
        if getattr(command_info, "command_type", None) in _ASK_THE_RUN_TO_STORE:
            return self.inner.get_external_store_context(command_info)  # type: ignore[arg-type]
        return self._own_store

    def get_info(self) -> Info:
        return self.inner.get_info()

    def get_thread_id(self) -> int | None:
        return self.inner.get_thread_id()
