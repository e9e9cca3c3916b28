"""The ticket workflow's own modules are passed through the sandbox: a module left out is
re-executed for every new ticket (its class bodies, `@workflow.defn`'s inspection), which
costs the worker CPU per creation and memory per cached ticket."""

from __future__ import annotations

from pathlib import Path

from workers.worker import PASSTHROUGH_MODULES

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def test_every_ticket_workflow_module_is_passed_through() -> None:
    modules = {
        f"workflows.{path.stem}"
        for path in WORKFLOWS.glob("*.py")
        if path.stem.startswith("ticket") or path.stem == "local_first"
    }
    assert modules, "no ticket workflow modules found"
    assert modules <= set(PASSTHROUGH_MODULES), sorted(modules - set(PASSTHROUGH_MODULES))


def test_workflows_pass_through_no_activity_module() -> None:
    """Workflows reach activities by name (helpdesk.rules.activity_contracts)."""
    assert not any(m == "activities" or m.startswith("activities.") for m in PASSTHROUGH_MODULES)
