"""What the ticket list is asked for: the filters and the page (order, size, position)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from models.enums import Priority, TicketStatus

SortField = Literal["created_at", "updated_at", "priority", "due_date"]
Direction = Literal["asc", "desc"]


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """What to list. Several values of one field match any of them; tags must all match;
    the keyword query must match every word."""

    statuses: tuple[TicketStatus, ...] = ()
    priorities: tuple[Priority, ...] = ()
    category_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool = False
    requester_id: uuid.UUID | None = None
    tags: tuple[str, ...] = ()
    escalated: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    q: str | None = None
    sla: str | None = None  # "breached" | "at_risk"

    def names(self) -> list[str]:
        """Names of the filters in use (for the audit row: never their values)."""
        used = []
        for name in self.__slots__:
            value = getattr(self, name)
            if value not in (None, (), False):
                used.append(name)
        return sorted(used)


@dataclass(frozen=True, slots=True)
class PageRequest:
    sort: SortField = "created_at"
    direction: Direction = "desc"
    page: int = 1
    page_size: int = 25
    cursor: str | None = None
