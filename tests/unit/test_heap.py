"""helpdesk.heap: a started process freezes start-up's objects out of the GC's walks."""

from __future__ import annotations

import gc

import pytest

from helpdesk import heap


def test_settle_collects_then_freezes_what_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELPDESK_GC_FREEZE", raising=False)
    cycle: list[object] = []
    cycle.append(cycle)  # garbage only the cyclic collector frees
    del cycle
    try:
        frozen = heap.settle()
        assert frozen == gc.get_freeze_count() > 1000
        # A frozen object is in no generation: a later full collection does not walk it.
        assert sum(len(gc.get_objects(g)) for g in range(3)) < frozen
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("value", ["0", "false", "no"])
def test_settle_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HELPDESK_GC_FREEZE", value)
    assert heap.settle() == 0
    assert gc.get_freeze_count() == 0
