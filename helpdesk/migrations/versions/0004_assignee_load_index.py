"""An index that answers automatic assignment's load query on its own.

Revision ID: 0004
Revises: 0003

Automatic assignment (on every creation, by default) sums each active agent's open tickets
weighted by priority. With (assignee_id, status, created_at) the database found an agent's
open tickets in the index but read every one of their rows for its priority and deletion
mark: work that grows with the open backlog (thousands of rows per new ticket at a busy
desk). (assignee_id, status, deleted_at, priority) holds everything the query reads.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_tickets_assignee_load",
        "tickets",
        ["assignee_id", "status", "deleted_at", "priority"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_assignee_load", table_name="tickets")
