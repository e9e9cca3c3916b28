"""The ticket list's query plan: the result split into index-friendly branches (one per
status, priority or due-date group), each ``ORDER BY ... LIMIT k``, merged again in list
order (see `helpdesk.services.ticket_list`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, select, union_all
from sqlalchemy.orm import InstrumentedAttribute

from helpdesk.services.ticket_list_request import Direction, SortField, TicketFilter
from models.enums import Priority, TicketStatus
from models.ticket import Ticket

# Order of priorities in the list (the same ranks as Ticket.priority_rank); sorting by
# priority merges one branch per priority value, so the rank never needs an index.
PRIORITY_RANK: dict[Priority, int] = {
    Priority.LOW: 1,
    Priority.MEDIUM: 2,
    Priority.HIGH: 3,
    Priority.CRITICAL: 4,
}


@dataclass(frozen=True, slots=True)
class Branch:
    """One index-friendly slice of the result: extra conditions, the constant sort prefix
    its rows share, and the columns ordering rows inside it (the last one is ``id``).

    ``lead`` are columns that are NULL in every row of the branch, ordered by ahead of
    ``inner``: that changes nothing, but PostgreSQL takes ``x IS NULL`` for an equality
    only then, and reads (x, ...) indexes in order instead of sorting the whole range."""

    where: tuple[ColumnElement[bool], ...]
    prefix: tuple[int, ...]
    inner: tuple[InstrumentedAttribute[Any], ...]
    lead: tuple[InstrumentedAttribute[Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ListPlan:
    branches: list[Branch]
    prefix_desc: bool
    prefix_of: Callable[[Row[Any]], tuple[int, ...]]
    inner_of: Callable[[Row[Any]], tuple[Any, ...]]
    # The column ordering rows after the prefix in every branch (NULL where a branch
    # orders by id alone: its prefix sets it apart).
    key: InstrumentedAttribute[Any]
    splits_status: bool = False


def list_plan(filters: TicketFilter, sort: SortField, direction: Direction) -> ListPlan:
    desc = direction == "desc"
    statuses = filters.statuses or ()
    if sort == "priority":
        wanted = filters.priorities or tuple(Priority)
        branches = [
            Branch(
                (Ticket.priority == p.value,), (PRIORITY_RANK[p],), (Ticket.created_at, Ticket.id)
            )
            for p in wanted
        ]
        return ListPlan(
            branches,
            desc,
            lambda r: (PRIORITY_RANK[Priority(r.priority)],),
            lambda r: (r.created_at, r.id),
            Ticket.created_at,
        )
    if sort == "due_date":
        # Tickets without a due date come last in both directions. With a status filter,
        # one pair of branches per status ranges over (status, due_date, id).
        per_status: list[tuple[ColumnElement[bool], ...]] = [
            (Ticket.status == st.value,) for st in statuses
        ] or [()]
        branches = []
        for cond in per_status:
            branches += [
                Branch((*cond, Ticket.due_date.is_not(None)), (0,), (Ticket.due_date, Ticket.id)),
                Branch((*cond, Ticket.due_date.is_(None)), (1,), (Ticket.id,), (Ticket.due_date,)),
            ]
        return ListPlan(
            branches,
            False,
            lambda r: (0,) if r.due_date is not None else (1,),
            lambda r: (r.due_date, r.id) if r.due_date is not None else (r.id,),
            Ticket.due_date,
            splits_status=bool(statuses),
        )
    column = Ticket.created_at if sort == "created_at" else Ticket.updated_at
    inner = (column, Ticket.id)
    split: tuple[ColumnElement[bool], ...] = ()
    lead: tuple[InstrumentedAttribute[Any], ...] = ()
    by_status = False
    if sort == "created_at":
        wants_status_index = (
            filters.assignee_id is not None or filters.unassigned or filters.escalated is not None
        )
        if filters.unassigned:
            lead = (Ticket.assignee_id,)
        if len(statuses) > 1 or (wants_status_index and not statuses):
            by_status = True
            # One index range per status: (status, created_at, id) or, for an assignee
            # (or none) or the escalated flag, (assignee_id | escalated, status, created_at).
            split = tuple(Ticket.status == s.value for s in (statuses or tuple(TicketStatus)))
        elif len(filters.priorities) > 1:
            split = tuple(Ticket.priority == p.value for p in filters.priorities)
    name = column.key

    def inner_of(row: Row[Any]) -> tuple[Any, ...]:
        return (getattr(row, name), row.id)

    branches = [Branch((cond,), (), inner, lead) for cond in split] or [Branch((), (), inner, lead)]
    return ListPlan(branches, False, lambda r: (), inner_of, column, splits_status=by_status)


def merged_branches(
    parts: list[Select[Any]], plan: ListPlan, desc: bool, limit: int
) -> Select[Any]:
    """The first `limit` rows of the branches together, in list order."""
    union = union_all(*(select(p.subquery()) for p in parts)).subquery()
    keys = [c for c in union.c if c.key.startswith("p")]
    order = [c.desc() if plan.prefix_desc else c.asc() for c in keys]
    order += [c.desc() if desc else c.asc() for c in (union.c.k, union.c.id)]
    return select(union.c.id).order_by(*order).limit(limit)


def merge_rows(rows: list[Row[Any]], plan: ListPlan, desc: bool) -> list[Row[Any]]:
    """Order the union of the branches: by prefix group, then inside each group."""
    groups: dict[tuple[int, ...], list[Row[Any]]] = {}
    for row in rows:
        groups.setdefault(plan.prefix_of(row), []).append(row)
    ordered: list[Row[Any]] = []
    for prefix in sorted(groups, reverse=plan.prefix_desc):
        ordered.extend(sorted(groups[prefix], key=plan.inner_of, reverse=desc))
    return ordered
