"""Routes: categories. Every signed-in user reads them; administrators change them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from api.deps import Admin, AnyUser, RuntimeDep, SessionDep
from api.schemas.categories import (
    CategoryCreate,
    CategoryDeleted,
    CategoryList,
    CategoryOut,
    CategoryQuery,
    CategoryTreeNode,
    CategoryUpdate,
)
from helpdesk.errors import PermissionDenied
from helpdesk.services import categories
from models.enums import Role

router = APIRouter()


def _node(node: categories.CategoryNode) -> CategoryTreeNode:
    out = CategoryTreeNode.model_validate(node.category)
    out.children = [_node(child) for child in node.children]
    return out


@router.get("", response_model=CategoryList)
async def list_categories(
    query: Annotated[CategoryQuery, Query()],
    principal: AnyUser,
    session: SessionDep,
    request: Request,
) -> CategoryList:
    """Active categories, flat (each with parent_id) or as a tree. Administrators may add
    `include_inactive=true`."""
    if query.include_inactive and principal.role is not Role.ADMINISTRATOR:
        raise PermissionDenied(
            "only administrators list inactive categories",
            audit={
                "action": "access.denied",
                "outcome": "denied",
                "details": {
                    "route": request.scope.get("path", ""),
                    "method": "GET",
                    "why": "include_inactive",
                },
            },
        )
    rows = await categories.list_categories(session, include_inactive=query.include_inactive)
    if query.shape == "tree":
        return CategoryList(shape="tree", items=[_node(n) for n in categories.build_tree(rows)])
    return CategoryList(shape="flat", items=[CategoryOut.model_validate(r) for r in rows])


@router.post("", response_model=CategoryOut, status_code=status.HTTP_201_CREATED)
async def create_category(
    body: CategoryCreate, principal: Admin, session: SessionDep, runtime: RuntimeDep
) -> CategoryOut:
    category = await categories.create_category(
        session,
        runtime,
        name=body.name,
        description=body.description,
        parent_id=body.parent_id,
        actor_id=principal.id,
    )
    return CategoryOut.model_validate(category)


@router.put("/{category_id}", response_model=CategoryOut)
async def update_category(
    category_id: uuid.UUID,
    body: CategoryUpdate,
    principal: Admin,
    session: SessionDep,
    runtime: RuntimeDep,
) -> CategoryOut:
    """Rename, re-describe, move (`parent_id`, null for the root) or (re)activate."""
    category = await categories.update_category(
        session,
        runtime,
        category_id,
        changes=body.model_dump(include=body.model_fields_set),
        actor_id=principal.id,
    )
    return CategoryOut.model_validate(category)


@router.delete("/{category_id}", response_model=CategoryDeleted)
async def delete_category(
    category_id: uuid.UUID, principal: Admin, session: SessionDep, runtime: RuntimeDep
) -> CategoryDeleted:
    """Delete an unused leaf; a category in use or with children is deactivated instead."""
    outcome, category = await categories.delete_category(
        session, runtime, category_id, actor_id=principal.id
    )
    return CategoryDeleted(outcome=outcome, category=CategoryOut.model_validate(category))
