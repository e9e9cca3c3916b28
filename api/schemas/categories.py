"""Request and response bodies of /categories."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

CategoryName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CategoryName
    description: Description | None = None
    parent_id: uuid.UUID | None = None


class CategoryUpdate(BaseModel):
    """Fields to change; a field left out stays as it is (`parent_id: null` moves to the root)."""

    model_config = ConfigDict(extra="forbid")

    name: CategoryName | None = None
    description: Description | None = None
    parent_id: uuid.UUID | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _no_null_required(self) -> CategoryUpdate:
        for name in ("name", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class CategoryQuery(BaseModel):
    """Query of GET /categories (unknown parameters are refused)."""

    model_config = ConfigDict(extra="forbid")

    shape: Literal["flat", "tree"] = "flat"
    include_inactive: bool = False


class CategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    parent_id: uuid.UUID | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


class CategoryTreeNode(CategoryOut):
    children: list[CategoryTreeNode] = Field(default_factory=list)


class CategoryList(BaseModel):
    """`items` holds the flat list (with parent_id) or the roots of the tree."""

    shape: Literal["flat", "tree"]
    items: list[CategoryOut] | list[CategoryTreeNode]


class CategoryDeleted(BaseModel):
    """What DELETE did: removed an unused leaf, or deactivated a category still referenced."""

    outcome: Literal["deleted", "deactivated"]
    category: CategoryOut
