"""Users carry the seed's first and last names (sealed like every name) and their last login.

Revision ID: 0006
Revises: 0005

`users.full_name_enc` becomes `first_name_enc` and `last_name_enc`: each existing name is
opened under its user's data key, split (`helpdesk.services.users.split_full_name`: the
first word is the first name, the rest the last name, so "Ludwig van Beethoven" keeps "van
Beethoven" together) and sealed again, each part bound to its own column. The full name the
API still returns is derived from the two. `last_login_at` is new and starts empty.

Like 0005, moving existing names needs the KEK(s) of the settings (`helpdesk migrate` hands
them over); a database without names (a new one) needs none. Users whose data key was
disposed have no name left to move.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "users"


def _keyring() -> Any:
    from helpdesk.runtime import build_keyring

    settings = context.config.attributes.get("settings")
    if settings is None:
        from helpdesk.settings import get_settings

        settings = get_settings()
    return build_keyring(settings)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _names(bind: sa.Connection, *sealed: str) -> list[tuple[Any, ...]]:
    """(user id, data key id, kek id, wrapped key, *sealed columns) of users with a name."""
    users = sa.table(
        TABLE,
        sa.column("id", sa.Uuid()),
        sa.column("data_key_id", sa.Uuid()),
        *(sa.column(c, sa.LargeBinary()) for c in sealed),
    )
    keys = sa.table(
        "data_keys",
        sa.column("id", sa.Uuid()),
        sa.column("kek_id", sa.String()),
        sa.column("wrapped_key", sa.LargeBinary()),
    )
    query = (
        sa.select(
            users.c.id,
            keys.c.id,
            keys.c.kek_id,
            keys.c.wrapped_key,
            *(users.c[c] for c in sealed),
        )
        .join_from(users, keys, keys.c.id == users.c.data_key_id)
        .where(sa.or_(*(users.c[c].is_not(None) for c in sealed)))
    )
    return [tuple(row) for row in bind.execute(query).all()]


def _unwrap(keyring: Any, key_id: Any, kek_id: str, wrapped: Any) -> Any:
    from helpdesk.crypto import WrappedKey

    return keyring.unwrap(WrappedKey(_uuid(key_id), kek_id, bytes(wrapped)))


def _seal(key: Any, user_id: uuid.UUID, column: str, value: str | None) -> bytes | None:
    from helpdesk.crypto import encrypt_field

    if value is None:
        return None
    return encrypt_field(key, value, table=TABLE, column=column, row_id=user_id)


def _open(key: Any, user_id: uuid.UUID, column: str, blob: Any) -> str | None:
    from helpdesk.crypto import decrypt_field

    if blob is None:
        return None
    return decrypt_field(key, bytes(blob), table=TABLE, column=column, row_id=user_id)


def _users_table(*columns: str) -> Any:
    return sa.table(
        TABLE, sa.column("id", sa.Uuid()), *(sa.column(c, sa.LargeBinary()) for c in columns)
    )


def upgrade() -> None:
    from helpdesk.services.users import split_full_name

    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_name_enc", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("last_name_enc", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    rows = _names(bind, "full_name_enc")
    if rows:
        keyring = _keyring()
        table = _users_table("first_name_enc", "last_name_enc")
        for user_id, key_id, kek_id, wrapped, full_name_enc in rows:
            uid = _uuid(user_id)
            key = _unwrap(keyring, key_id, kek_id, wrapped)
            first, last = split_full_name(_open(key, uid, "full_name", full_name_enc))
            bind.execute(
                table.update()
                .where(table.c.id == uid)
                .values(
                    first_name_enc=_seal(key, uid, "first_name", first),
                    last_name_enc=_seal(key, uid, "last_name", last),
                )
            )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_column("full_name_enc")


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("full_name_enc", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    rows = _names(bind, "first_name_enc", "last_name_enc")
    if rows:
        keyring = _keyring()
        table = _users_table("full_name_enc")
        for user_id, key_id, kek_id, wrapped, first_enc, last_enc in rows:
            uid = _uuid(user_id)
            key = _unwrap(keyring, key_id, kek_id, wrapped)
            parts = [
                _open(key, uid, "first_name", first_enc),
                _open(key, uid, "last_name", last_enc),
            ]
            full = " ".join(p for p in parts if p) or None
            bind.execute(
                table.update()
                .where(table.c.id == uid)
                .values(full_name_enc=_seal(key, uid, "full_name", full))
            )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_column("last_login_at")
        batch_op.drop_column("last_name_enc")
        batch_op.drop_column("first_name_enc")
