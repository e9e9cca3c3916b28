"""workers.context_free: a run answers the SDK's serialization-context questions itself,
and every answer selects the same converter (so the same payload bytes, and the same
workflow named in a refusal audit) as the SDK's own answer from inside the sandbox; its
external-store answers equal the SDK's.

Checked on a real worker and dev server with our encrypting data converter: a workflow
that runs an activity, a local activity, a timer with a summary, and a child workflow
(whose context the run is still asked for)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.converter import (
    DataConverter,
    PayloadCodec,
    SerializationContext,
    StorageDriverStoreContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.worker import Worker, WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from helpdesk.settings import Settings
from helpdesk.temporal import data_converter
from workers.context_free import ContextFreeInstance, ignores_activity_context
from workers.first_activation import FirstActivationRunner
from workers.worker import PASSTHROUGH_MODULES, workflow_runner


@activity.defn(name="ctx_double")
async def double(value: int) -> int:
    return 2 * value


@workflow.defn(name="CtxChild")
class ChildWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        return value + 1


@workflow.defn(name="CtxParent")
class ParentWorkflow:
    @workflow.run
    async def run(self, value: int) -> list[int]:
        a = await workflow.execute_activity(
            double, value, start_to_close_timeout=timedelta(seconds=10), summary="double"
        )
        b = await workflow.execute_local_activity(
            double, a, start_to_close_timeout=timedelta(seconds=10), summary="again"
        )
        await workflow.sleep(timedelta(milliseconds=10), summary="a short wait")
        c = await workflow.execute_child_workflow(
            ChildWorkflow.run, b, id=f"{workflow.info().workflow_id}-child"
        )
        return [a, b, c]


@dataclasses.dataclass
class Answers:
    asked: int = 0
    stores: int = 0
    by_the_run: int = 0
    differing: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class CheckingRunner(FirstActivationRunner):
    """Our runner, each run also asking its sandbox and comparing the two answers."""

    answers: Answers = dataclasses.field(default_factory=Answers)
    converter: DataConverter | None = None

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        instance = super().create_instance(det)
        assert isinstance(instance, ContextFreeInstance)
        return _Checking(instance.inner, self.answers, self.converter)


class _Checking(ContextFreeInstance):
    def __init__(
        self, inner: WorkflowInstance, answers: Answers, converter: DataConverter | None
    ) -> None:
        super().__init__(inner)
        self.answers, self.converter = answers, converter

    def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
        ours = super().get_external_store_context(command_info)
        sdk = self.inner.get_external_store_context(command_info)  # type: ignore[arg-type]
        self.answers.stores += 1
        if ours != sdk:
            self.answers.differing.append(f"store {command_info}: ours {ours}, sdk {sdk}")
        return ours

    def get_serialization_context(self, command_info: object) -> SerializationContext | None:
        ours = super().get_serialization_context(command_info)
        sdk = self.inner.get_serialization_context(command_info)  # type: ignore[arg-type]
        self.answers.asked += 1
        assert self.converter is not None
        if ours == sdk:
            if isinstance(sdk, WorkflowSerializationContext) and sdk != self._own:
                self.answers.by_the_run += 1  # another workflow's context: the run's answer
            return ours
        # A different answer must select the same converter (in `_get_current_dc`: None is
        # the context-free one; any other context is applied to it).
        if _effect(self.converter, ours) != _effect(self.converter, sdk):
            self.answers.differing.append(f"{command_info}: ours {ours}, sdk {sdk}")
        return ours


def _effect(converter: DataConverter, context: SerializationContext | None) -> Any:
    """What an answer changes in our converter: whether it stays the context-free one,
    and the workflow its codec names (in a refusal audit)."""
    chosen = converter if context is None else converter.with_context(context)
    return (chosen is converter, getattr(chosen.payload_codec, "_workflow_id", None))


async def test_every_answer_selects_the_converter_the_sandbox_would(
    temporal_client: Client, settings: Settings
) -> None:
    converter = temporal_client.data_converter
    assert ignores_activity_context(converter)
    answers = Answers()
    runner = CheckingRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *PASSTHROUGH_MODULES, __name__
        ),
        context_free=True,
        answers=answers,
        converter=converter,
    )
    queue = f"ctx-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[ParentWorkflow, ChildWorkflow],
        activities=[double],
        workflow_runner=runner,
    ):
        result = await temporal_client.execute_workflow(
            ParentWorkflow.run, 5, id=f"ctx-{uuid.uuid4()}", task_queue=queue
        )
    assert result == [10, 20, 21]  # every payload went through our encrypting converter
    assert answers.differing == []
    assert answers.asked >= 10
    assert answers.stores >= 5
    # The child workflow's payloads were answered by the run itself, as before.
    assert answers.by_the_run >= 1


class _ActivityAwareCodec(PayloadCodec, WithSerializationContext):
    """A codec that reads an activity's context (as a per-activity key would)."""

    def __init__(self, activity_type: str = "") -> None:
        self.activity_type = activity_type

    def with_context(self, context: SerializationContext) -> _ActivityAwareCodec:
        name = getattr(context, "activity_type", None)
        return _ActivityAwareCodec(name) if name else self

    async def encode(self, payloads: Any) -> Any:
        return list(payloads)

    async def decode(self, payloads: Any) -> Any:
        return list(payloads)


def test_the_worker_answers_itself_only_for_a_converter_that_ignores_activities(
    settings: Settings,
) -> None:
    ours = workflow_runner(data_converter=data_converter(settings))
    assert isinstance(ours, FirstActivationRunner) and ours.context_free
    aware = dataclasses.replace(DataConverter.default, payload_codec=_ActivityAwareCodec())
    assert not workflow_runner(data_converter=aware).context_free  # type: ignore[attr-defined]
    assert not workflow_runner().context_free  # type: ignore[attr-defined]
    assert isinstance(ours, SandboxedWorkflowRunner)
