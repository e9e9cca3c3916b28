"""Analytics pair cells per UTC day only: the hourly cells of every pair of dimensions (a
tag with a dimension included) are deleted; the daily ones stay.

Revision ID: 0010
Revises: 0009

Most values of a pair (an agent in a category) see one event in an hour, so the hourly pair
cells were about two thirds of all rollup rows (1.7M of 2.6M at 100,000 tickets) and of the
writes per change. Figures on two dimensions now count whole UTC days
(helpdesk.analytics.queries.counted); a series by hour on two dimensions is computed from
the fact rows, which get an index by category (with status and priority) for the reads
that filter on one: three dimensions with a category read that category's facts (1/40 of
them in the benchmark's data) instead of every fact of a status and priority. On SQLite the
file keeps its size until `VACUUM`.

Downgrade: 0009's code reads hourly pair cells, so a database holding ticket facts is
marked for the rebuild (`counters.analytics_rebuild_due`) that `helpdesk migrate` runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLLUPS = sa.table("analytics_rollups", sa.column("dim", sa.String()))


def upgrade() -> None:
    hourly_pair = _ROLLUPS.c.dim.like("%+%") & ~_ROLLUPS.c.dim.like("%@d")
    op.execute(_ROLLUPS.delete().where(hourly_pair))
    op.create_index(
        "ix_ticket_facts_category_status_priority",
        "ticket_facts",
        ["category_id", "status", "priority"],
    )


def downgrade() -> None:
    op.drop_index("ix_ticket_facts_category_status_priority", table_name="ticket_facts")
    bind = op.get_bind()
    facts = bind.execute(sa.text("SELECT 1 FROM ticket_facts LIMIT 1")).first()
    due = bind.execute(
        sa.text("SELECT 1 FROM counters WHERE name = 'analytics_rebuild_due'")
    ).first()
    if facts is not None and due is None:
        bind.execute(
            sa.text("INSERT INTO counters (name, value) VALUES ('analytics_rebuild_due', 1)")
        )
