"""What the composed parts of TicketWorkflow (`SlaClocks`, `Comments`) may use of it: the
ticket's state and configuration, the lock that serialises changes, the outbox the main loop
drains, and the one change path (persist a change, then accept it). Nothing else: a part
never sets search attributes, writes history or sends a notification on its own.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from helpdesk.rules.contracts import (
        ChangeEvent,
        FieldUpdates,
        PersistResult,
        TicketConfig,
        TicketState,
    )


class TicketHost(Protocol):
    """The members of TicketWorkflow its parts reach it through."""

    ticket: TicketState
    config: TicketConfig
    lock: asyncio.Lock  # held by whoever changes the ticket
    outbox: list[ChangeEvent]  # accepted changes whose effects the main loop still runs

    def seen(self, request_id: str) -> bool:
        """Whether a change with this request id was already accepted."""
        ...

    def answer(self) -> TicketState:
        """The state an update answers with."""
        ...

    async def persist(
        self,
        request_id: str,
        actor: Any,
        action: str,
        updates: FieldUpdates,
        changes: dict[str, Any],
        *,
        summary: str,
        note: str | None = None,
        auto_assign: bool = False,
    ) -> PersistResult:
        """Write one change through the ticket's one write path (row, history, audit)."""
        ...

    def accepted(self, request_id: str, action: str, changes: dict[str, Any]) -> None:
        """Count a persisted change in: version, dedupe, search attributes, outbox."""
        ...
