"""helpdesk.eventloop: the commands' event loop is uvloop unless the operator opts out."""

from __future__ import annotations

import asyncio

import pytest

from helpdesk import eventloop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_commands_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELPDESK_EVENT_LOOP", raising=False)
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_helpdesk_event_loop_asyncio_goes_back_to_the_standard_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HELPDESK_EVENT_LOOP", "asyncio")
    assert eventloop.run(_loop_module()).startswith("asyncio")
