"""Ticket tags are sealed like other PHI, found by a keyed blind token.

Revision ID: 0005
Revises: 0004

`ticket_tags.tag` held each tag in plain text, yet tags are free text that a requester or
agent types (a diagnosis, a name). The table becomes (ticket_id, token, tag_sealed): `token`
is the tag's blind-index HMAC (exact-match filtering), `tag_sealed` the tag under the
ticket's data key (`helpdesk.services.ticket_tags`). The history's record of a tag change
({"old": [...], "new": [...]}) is sealed the same way.

Existing rows are re-sealed here, so this migration needs the keys when there are tags to
move: the KEK(s) and the blind-index key of the settings (`helpdesk migrate` hands its
settings over; otherwise they are loaded from HELPDESK_* like every process's). An empty
table (a new database) needs no key. Tags of disposed tickets (no data key) are dropped:
their text was shredded with the key. Old plain-text pages are not left behind on SQLite
(`secure_delete` is on).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _keys() -> tuple[Any, Any]:
    """The key ring and the blind index of the settings (only when rows need them)."""
    from helpdesk.crypto import BlindIndex
    from helpdesk.runtime import build_keyring

    settings = context.config.attributes.get("settings")
    if settings is None:
        from helpdesk.settings import get_settings

        settings = get_settings()
    keyring = build_keyring(settings)  # the local KEK ring, or Key Vault's
    return keyring, BlindIndex(settings.secret_bytes("blind_index_key"))


def _data_keys(bind: sa.Connection, keyring: Any, ticket_ids: set[Any]) -> dict[str, Any]:
    """Ticket id (str) → its unwrapped data key, for tickets that still have one."""
    from helpdesk.crypto import WrappedKey

    found: dict[str, Any] = {}
    rows = bind.execute(
        sa.text(
            "SELECT t.id, k.id, k.kek_id, k.wrapped_key FROM tickets t "
            "JOIN data_keys k ON k.id = t.data_key_id"
        )
    )
    wanted = {str(_uuid(t)) for t in ticket_ids}
    for ticket_id, key_id, kek_id, wrapped in rows:
        if str(_uuid(ticket_id)) in wanted:
            found[str(_uuid(ticket_id))] = keyring.unwrap(
                WrappedKey(_uuid(key_id), kek_id, bytes(wrapped))
            )
    return found


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _tag_changes(bind: sa.Connection) -> list[tuple[Any, Any, str, dict[str, Any]]]:
    rows = bind.execute(
        sa.text("SELECT id, ticket_id, event_key, changes FROM ticket_history")
    ).all()
    found = []
    for history_id, ticket_id, event_key, changes in rows:
        data = json.loads(changes) if isinstance(changes, str) else changes
        if isinstance(data, dict) and "tags" in data:
            found.append((history_id, ticket_id, event_key, data))
    return found


def _new_table() -> None:
    op.create_table(
        "ticket_tags",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("tag_sealed", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_tags_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_id", "token", name=op.f("pk_ticket_tags")),
    )
    with op.batch_alter_table("ticket_tags", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_tags_token", ["token", "ticket_id"], unique=False)


def _old_table() -> None:
    op.create_table(
        "ticket_tags",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=50), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_tags_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ticket_id", "tag", name=op.f("pk_ticket_tags")),
    )
    with op.batch_alter_table("ticket_tags", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_tags_tag", ["tag", "ticket_id"], unique=False)


def _drop_table(index: str) -> None:
    with op.batch_alter_table("ticket_tags", schema=None) as batch_op:
        batch_op.drop_index(index)
    op.drop_table("ticket_tags")


def _history_table() -> Any:
    return sa.table("ticket_history", sa.column("id", sa.Uuid()), sa.column("changes", sa.JSON()))


def upgrade() -> None:
    from helpdesk.services import ticket_tags

    bind = op.get_bind()
    old = bind.execute(sa.text("SELECT ticket_id, tag FROM ticket_tags")).all()
    changes = [c for c in _tag_changes(bind) if "sealed" not in c[3]["tags"]]
    _drop_table("ix_ticket_tags_tag")
    _new_table()
    if not old and not changes:
        return
    keyring, index = _keys()
    keys = _data_keys(bind, keyring, {t for t, _ in old} | {c[1] for c in changes})
    by_ticket: dict[str, list[str]] = {}
    for ticket_id, tag in old:
        by_ticket.setdefault(str(_uuid(ticket_id)), []).append(tag)
    new_rows = []
    for ticket_id, tags in by_ticket.items():
        key = keys.get(ticket_id)
        if key is None:
            continue  # a disposed ticket: its tags go with its text
        for row in ticket_tags.rows_for(index, key, _uuid(ticket_id), tags):
            new_rows.append(
                {"ticket_id": row.ticket_id, "token": row.token, "tag_sealed": row.tag_sealed}
            )
    if new_rows:
        table = sa.table(
            "ticket_tags",
            sa.column("ticket_id", sa.Uuid()),
            sa.column("token", sa.String()),
            sa.column("tag_sealed", sa.Text()),
        )
        op.bulk_insert(table, new_rows)
    history = _history_table()
    for history_id, ticket_id, event_key, data in changes:
        key = keys.get(str(_uuid(ticket_id)))
        tags = data["tags"]
        if key is None or not isinstance(tags, dict):
            data["tags"] = {"changed": True}
        else:
            data["tags"] = ticket_tags.seal_change(
                key, _uuid(ticket_id), event_key, tags.get("old", []), tags.get("new", [])
            )
        bind.execute(history.update().where(history.c.id == _uuid(history_id)).values(changes=data))


def downgrade() -> None:
    from helpdesk.services import ticket_tags

    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT ticket_id, token, tag_sealed FROM ticket_tags")).all()
    changes = [c for c in _tag_changes(bind) if "sealed" in c[3]["tags"]]
    _drop_table("ix_ticket_tags_token")
    _old_table()
    if not rows and not changes:
        return
    keyring, _ = _keys()
    keys = _data_keys(bind, keyring, {r[0] for r in rows} | {c[1] for c in changes})
    plain = []
    for ticket_id, token, sealed in rows:
        key = keys.get(str(_uuid(ticket_id)))
        if key is not None:
            tag = ticket_tags.open_tag(key, _uuid(ticket_id), token, sealed)
            plain.append({"ticket_id": _uuid(ticket_id), "tag": tag})
    if plain:
        table = sa.table(
            "ticket_tags", sa.column("ticket_id", sa.Uuid()), sa.column("tag", sa.String())
        )
        op.bulk_insert(table, plain)
    history = _history_table()
    for history_id, ticket_id, event_key, data in changes:
        key = keys.get(str(_uuid(ticket_id)))
        data["tags"] = ticket_tags.open_change(key, _uuid(ticket_id), event_key, data["tags"])
        bind.execute(history.update().where(history.c.id == _uuid(history_id)).values(changes=data))
