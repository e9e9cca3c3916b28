"""Keyset pagination of the ticket list: opaque cursors naming the sort key of a page's
last row, and the condition that selects the rows after it in each branch."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from helpdesk.errors import ValidationFailed
from helpdesk.services.ticket_list_plan import Branch


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.astimezone(UTC).isoformat()}
    if isinstance(value, uuid.UUID):
        return {"u": value.hex}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"}:
        return datetime.fromisoformat(value["t"])
    if isinstance(value, dict) and set(value) == {"u"}:
        return uuid.UUID(hex=value["u"])
    raise ValueError("bad cursor value")


def encode_cursor(
    sort: str, direction: str, prefix: tuple[int, ...], inner: tuple[Any, ...]
) -> str:
    """An opaque position after the row whose sort key is (prefix, inner)."""
    payload = {"s": sort, "d": direction, "p": list(prefix), "v": [_encode_value(v) for v in inner]}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class CursorPosition:
    prefix: tuple[int, ...]
    inner: tuple[Any, ...]


def decode_cursor(cursor: str, sort: str, direction: str) -> CursorPosition:
    """The position a cursor names; 422 when it is not one of ours or another sort's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if payload["s"] != sort or payload["d"] != direction:
            raise ValueError("cursor of another ordering")
        prefix = tuple(int(p) for p in payload["p"])
        inner = tuple(_decode_value(v) for v in payload["v"])
        if not inner or not isinstance(inner[-1], uuid.UUID):
            raise ValueError("cursor without an id")
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise ValidationFailed(
            "cursor is not valid for this ordering", details={"field": "cursor"}
        ) from exc
    return CursorPosition(prefix, inner)


def _after(
    columns: Sequence[InstrumentedAttribute[Any]], values: Sequence[Any], desc: bool
) -> ColumnElement[bool]:
    """Rows strictly after `values` in (columns...) order, written so that the leading
    column is an index range (row-value comparisons are not planned alike everywhere)."""
    head, rest = columns[0], columns[1:]
    value = values[0]
    if not rest:
        return head < value if desc else head > value
    beyond = head < value if desc else head > value
    within = head <= value if desc else head >= value
    return and_(within, or_(beyond, and_(head == value, _after(rest, values[1:], desc))))


def cursor_condition(
    branch: Branch, cursor: CursorPosition, prefix_desc: bool, desc: bool
) -> ColumnElement[bool] | Literal[False] | None:
    """Extra condition of a branch after the cursor: None (all rows), False (none)."""
    if branch.prefix != cursor.prefix:
        later = branch.prefix < cursor.prefix if prefix_desc else branch.prefix > cursor.prefix
        return None if later else False
    if len(cursor.inner) != len(branch.inner):
        raise ValidationFailed("cursor is not valid for this ordering", details={"field": "cursor"})
    return _after(branch.inner, cursor.inner, desc)
