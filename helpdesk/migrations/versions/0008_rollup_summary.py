"""Analytics rollup cells carry a summary: their metrics without the histograms, with each
histogram's median and p90 precomputed.

Revision ID: 0008
Revises: 0007

A point of a series made of one cell (a day, in a series by day) reads the summary alone, a
few hundred bytes instead of the histograms' kilobytes (decoding them was most of a 90-day
series' time). The column starts empty: readers take the whole metrics of a cell without
one, and each cell gets its summary the next time it is written (or all at once with
`helpdesk analytics rebuild`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("analytics_rollups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("summary", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analytics_rollups", schema=None) as batch_op:
        batch_op.drop_column("summary")
