"""Search tokens carry their ticket's creation time: keyword search reads newest first.

Revision ID: 0003
Revises: 0002

A keyword list (newest or oldest first, the default order) walks one index range,
(token, ticket_created_at, ticket_id), and stops after a page, instead of reading every
ticket that holds the word and sorting them, or walking every ticket in search of it.
A ticket's created_at never changes, so the copy never goes stale. That index also
serves every lookup the old (token, ticket_id) one did (by token), so it replaces it.

Keyword search checks each row it walks or counts for deletion: a partial index of the
live tickets' ids answers that from a small index rather than the tickets' big rows.

On SQLite, making the filled column NOT NULL copies the table (batch mode). On a large
PostgreSQL database, the backfill leaves the table and its primary key about twice their
size: `VACUUM FULL ticket_search_tokens` (or pg_repack) afterwards gives the space back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_search_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ticket_created_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute(
        "UPDATE ticket_search_tokens SET ticket_created_at = (SELECT tickets.created_at "
        "FROM tickets WHERE tickets.id = ticket_search_tokens.ticket_id)"
    )
    with op.batch_alter_table("ticket_search_tokens", schema=None) as batch_op:
        batch_op.alter_column(
            "ticket_created_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.drop_index("ix_ticket_search_tokens_token")
        batch_op.create_index(
            "ix_ticket_search_tokens_token_created",
            ["token", "ticket_created_at", "ticket_id"],
            unique=False,
        )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tickets_live",
            ["id"],
            unique=False,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_live")
    with op.batch_alter_table("ticket_search_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_search_tokens_token_created")
        batch_op.create_index("ix_ticket_search_tokens_token", ["token", "ticket_id"], unique=False)
        batch_op.drop_column("ticket_created_at")
