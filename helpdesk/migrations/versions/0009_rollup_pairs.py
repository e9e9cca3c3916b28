"""Analytics rollup cells per pair of dimensions and per approved tag: a dimension name up
to 24 characters (`priority+category@d`), a value up to 80 (`<uuid>|<uuid>`), an index by
value, and the approved tags a ticket's fact is counted under (`ticket_facts.tag_tokens`).

Revision ID: 0009
Revises: 0008

Besides one cell per single dimension and value, the rollups now keep one per pair of the
small dimensions (status, priority, category, assignee) and pair of values, so a filter on
one dimension grouped by another, or filters on two dimensions, is a sum of cells. The index
(dim, value, hour) finds the cells of given values over a period
without reading the period's other values. Cells are kept per approved tag's blind token
(`HELPDESK_ANALYTICS_EXPORT_TAGS`) too, alone and paired with each dimension; a tag's cells
are read once a rebuild has marked them complete (`tag@ready`). The open backlog gets cells
too (`backlog`, per creation day and status|priority), and hourly cells stop keeping a
summary (no schema change for either).

The pair, tag and backlog cells start empty. A database that already holds ticket facts is
marked (`counters.analytics_rebuild_due`), and `helpdesk.migrate.upgrade` rebuilds the facts
and rollups from the rows right after the migrations (what `helpdesk analytics rebuild`
does), so no figure is read, and no change is counted, against cells never filled.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tag_tokens", sa.JSON(), nullable=True))
    with op.batch_alter_table("analytics_rollups", schema=None) as batch_op:
        batch_op.alter_column("dim", existing_type=sa.String(length=12), type_=sa.String(length=24))
        batch_op.alter_column(
            "value", existing_type=sa.String(length=40), type_=sa.String(length=80)
        )
        batch_op.create_index(
            "ix_analytics_rollups_dim_value_hour", ["dim", "value", "hour"], unique=False
        )
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM ticket_facts LIMIT 1")).first() is not None:
        bind.execute(
            sa.text("INSERT INTO counters (name, value) VALUES ('analytics_rebuild_due', 1)")
        )


def downgrade() -> None:
    op.execute("DELETE FROM counters WHERE name = 'analytics_rebuild_due'")
    table = sa.table("analytics_rollups", sa.column("dim", sa.String()))
    kept_since = table.c.dim.like("%+%") | table.c.dim.like("tag%") | (table.c.dim == "backlog")
    op.execute(table.delete().where(kept_since))
    with op.batch_alter_table("analytics_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_analytics_rollups_dim_value_hour")
        batch_op.alter_column(
            "value", existing_type=sa.String(length=80), type_=sa.String(length=40)
        )
        batch_op.alter_column("dim", existing_type=sa.String(length=24), type_=sa.String(length=12))
    with op.batch_alter_table("ticket_facts", schema=None) as batch_op:
        batch_op.drop_column("tag_tokens")
