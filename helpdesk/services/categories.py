"""Ticket categories: a tree through parent_id, names unique among siblings.

A category some ticket uses (or one with children) is never deleted: DELETE deactivates it
and its whole subtree, so no ticket or child is left pointing at nothing and no active
category hangs under an inactive one. Categories hold no PHI; changes are audited anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.errors import Conflict, NotFound, ValidationFailed
from helpdesk.runtime import Runtime
from models.category import Category
from models.ticket import Ticket

TABLE = "categories"
DeleteOutcome = Literal["deleted", "deactivated"]


@dataclass
class CategoryNode:
    """A category with its children, for the tree view."""

    category: Category
    children: list[CategoryNode] = field(default_factory=list)


def _same_name(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


async def list_categories(session: AsyncSession, *, include_inactive: bool) -> list[Category]:
    """Every category (active ones only unless asked), ordered by name then id."""
    query = select(Category).order_by(Category.name, Category.id)
    if not include_inactive:
        query = query.where(Category.is_active.is_(True))
    return list(await session.scalars(query))


def build_tree(categories: Sequence[Category]) -> list[CategoryNode]:
    """Nest a flat list by parent_id; a node whose parent is not in the list is a root."""
    nodes = {c.id: CategoryNode(c) for c in categories}
    roots: list[CategoryNode] = []
    for category in categories:
        parent = nodes.get(category.parent_id) if category.parent_id else None
        (parent.children if parent else roots).append(nodes[category.id])
    return roots


async def get_category(session: AsyncSession, category_id: uuid.UUID) -> Category:
    category = await session.get(Category, category_id)
    if category is None:
        raise NotFound("category not found")
    return category


async def ensure_usable(session: AsyncSession, category_id: uuid.UUID | None) -> None:
    """For ticket commands: a ticket may only be filed under an existing, active category."""
    if category_id is None:
        return
    category = await session.get(Category, category_id)
    if category is None or not category.is_active:
        raise ValidationFailed(
            "category_id names no active category", details={"field": "category_id"}
        )


async def _check_parent(
    session: AsyncSession, parent_id: uuid.UUID | None, moving: uuid.UUID | None = None
) -> None:
    if parent_id is None:
        return
    parent = await session.get(Category, parent_id)
    if parent is None:
        raise ValidationFailed("parent_id names no category", details={"field": "parent_id"})
    if not parent.is_active:
        raise Conflict("the parent category is inactive", details={"field": "parent_id"})
    if moving is not None:
        # Walk up from the new parent: meeting the moved category means a cycle.
        seen: set[uuid.UUID] = set()
        cursor: Category | None = parent
        while cursor is not None and cursor.id not in seen:
            if cursor.id == moving:
                raise Conflict(
                    "a category cannot move under itself or its descendants",
                    details={"field": "parent_id"},
                )
            seen.add(cursor.id)
            cursor = await session.get(Category, cursor.parent_id) if cursor.parent_id else None


async def _check_unique_name(
    session: AsyncSession, name: str, parent_id: uuid.UUID | None, own_id: uuid.UUID | None
) -> None:
    # Checked here (case-insensitively) because UNIQUE(parent_id, name) lets NULL parents
    # repeat a name on both SQLite and PostgreSQL.
    siblings = await session.scalars(
        select(Category).where(
            Category.parent_id.is_(None) if parent_id is None else Category.parent_id == parent_id
        )
    )
    for sibling in siblings:
        if sibling.id != own_id and _same_name(sibling.name, name):
            raise Conflict(
                "a category with this name already exists here", details={"field": "name"}
            )


async def create_category(
    session: AsyncSession,
    runtime: Runtime,
    *,
    name: str,
    description: str | None,
    parent_id: uuid.UUID | None,
    actor_id: uuid.UUID,
) -> Category:
    name = name.strip()
    await _check_parent(session, parent_id)
    await _check_unique_name(session, name, parent_id, None)
    category = Category(
        name=name,
        description=description,
        parent_id=parent_id,
        is_active=True,
        created_by=actor_id,
        updated_by=actor_id,
    )
    session.add(category)
    await _flush_unique(session)
    await runtime.audit.record(
        session,
        "category.create",
        table=TABLE,
        record_id=category.id,
        details={"parent_id": str(parent_id) if parent_id else None},
    )
    return category


async def update_category(
    session: AsyncSession,
    runtime: Runtime,
    category_id: uuid.UUID,
    *,
    changes: dict[str, object],
    actor_id: uuid.UUID,
) -> Category:
    """Apply the given fields (name, description, parent_id, is_active); others stay."""
    category = await get_category(session, category_id)
    name = str(changes["name"]).strip() if "name" in changes else category.name
    parent_id = changes.get("parent_id", category.parent_id)
    if parent_id is not None and not isinstance(parent_id, uuid.UUID):
        raise ValidationFailed("parent_id must be a UUID", details={"field": "parent_id"})
    if parent_id != category.parent_id:
        await _check_parent(session, parent_id, moving=category.id)
    if parent_id != category.parent_id or not _same_name(name, category.name):
        await _check_unique_name(session, name, parent_id, category.id)
    changed: list[str] = []
    if name != category.name:
        category.name = name
        changed.append("name")
    if "description" in changes and changes["description"] != category.description:
        description = changes["description"]
        category.description = None if description is None else str(description)
        changed.append("description")
    if parent_id != category.parent_id:
        category.parent_id = parent_id
        changed.append("parent_id")
    if "is_active" in changes and bool(changes["is_active"]) != category.is_active:
        if changes["is_active"]:
            await _check_parent_active(session, category)
            category.is_active = True
        else:
            await _deactivate_subtree(session, category)
        changed.append("is_active")
    if changed:
        category.updated_by = actor_id
        await _flush_unique(session)
        await runtime.audit.record(
            session,
            "category.update",
            table=TABLE,
            record_id=category.id,
            details={"fields": changed},
        )
    return category


async def _check_parent_active(session: AsyncSession, category: Category) -> None:
    if category.parent_id is None:
        return
    parent = await session.get(Category, category.parent_id)
    if parent is not None and not parent.is_active:
        raise Conflict("reactivate the parent category first", details={"field": "is_active"})


async def _subtree_ids(session: AsyncSession, root: uuid.UUID) -> list[uuid.UUID]:
    """The root and every descendant (breadth first; categories are few)."""
    found = [root]
    frontier = [root]
    while frontier:
        children = list(
            await session.scalars(select(Category.id).where(Category.parent_id.in_(frontier)))
        )
        frontier = [c for c in children if c not in found]
        found.extend(frontier)
    return found


async def _deactivate_subtree(session: AsyncSession, category: Category) -> int:
    ids = await _subtree_ids(session, category.id)
    rows = list(await session.scalars(select(Category).where(Category.id.in_(ids))))
    for row in rows:
        row.is_active = False
    await session.flush()
    return len(rows)


async def delete_category(
    session: AsyncSession, runtime: Runtime, category_id: uuid.UUID, *, actor_id: uuid.UUID
) -> tuple[DeleteOutcome, Category]:
    """Delete an unused leaf; deactivate (with its subtree) a category in use or with
    children, so nothing is left pointing at a missing category."""
    category = await get_category(session, category_id)
    in_use = await session.scalar(select(exists().where(Ticket.category_id == category_id)))
    has_children = await session.scalar(select(exists().where(Category.parent_id == category_id)))
    if in_use or has_children:
        count = await _deactivate_subtree(session, category)
        category.updated_by = actor_id
        await runtime.audit.record(
            session,
            "category.deactivate",
            table=TABLE,
            record_id=category.id,
            details={
                "in_use": bool(in_use),
                "has_children": bool(has_children),
                "deactivated": count,
            },
        )
        return "deactivated", category
    await session.execute(delete(Category).where(Category.id == category_id))
    await runtime.audit.record(session, "category.delete", table=TABLE, record_id=category_id)
    return "deleted", category


async def _flush_unique(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        # A concurrent sibling with the same name won the race (UNIQUE(parent_id, name)).
        raise Conflict(
            "a category with this name already exists here", details={"field": "name"}
        ) from exc
