"""Analytics: one fact row per ticket, hourly and daily rollups per dimension, and the
customer-satisfaction surveys.

Revision ID: 0007
Revises: 0006

Both tables are written by the transaction that persists each ticket change
(`helpdesk.analytics.facts.record`). A database that already holds tickets fills them with
`helpdesk analytics rebuild` (from the ticket rows and their history) after this upgrade.
No PHI is stored: ids, enumerations, timestamps and counts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "ticket_facts",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        _when("created_at", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("category_id", sa.Uuid(), nullable=True),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        _when("first_response_at"),
        _when("first_resolved_at"),
        _when("resolved_at"),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        _when("last_reopened_at"),
        sa.Column("staff_replies", sa.Integer(), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        _when("escalated_at"),
        _when("first_response_breached_at"),
        _when("resolution_breached_at"),
        sa.Column("first_response_business_seconds", sa.Integer(), nullable=True),
        sa.Column("resolution_business_seconds", sa.Integer(), nullable=True),
        _when("csat_sent_at"),
        _when("csat_answered_at"),
        sa.Column("csat_rating", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_ticket_facts")),
    )
    op.create_index(
        "ix_ticket_facts_status_priority_created",
        "ticket_facts",
        ["status", "priority", "created_at"],
    )
    op.create_index("ix_ticket_facts_assignee_status", "ticket_facts", ["assignee_id", "status"])
    op.create_index("ix_ticket_facts_created", "ticket_facts", ["created_at"])
    op.create_table(
        "analytics_rollups",
        sa.Column("dim", sa.String(length=12), nullable=False),
        _when("hour", nullable=False),
        sa.Column("value", sa.String(length=40), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("dim", "hour", "value", name=op.f("pk_analytics_rollups")),
    )
    op.create_table(
        "satisfaction_surveys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _when("created_at", nullable=False),
        _when("send_after", nullable=False),
        _when("expires_at", nullable=False),
        _when("sent_at"),
        _when("cancelled_at"),
        _when("answered_at"),
        sa.Column("answered_by", sa.Uuid(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("comment_enc", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint(
            "rating IS NULL OR (rating >= 1 AND rating <= 5)",
            name=op.f("ck_satisfaction_surveys_rating"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_satisfaction_surveys_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["answered_by"],
            ["users.id"],
            name=op.f("fk_satisfaction_surveys_answered_by_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_satisfaction_surveys")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_satisfaction_surveys_token_hash")),
    )
    op.create_index(
        "ix_satisfaction_surveys_ticket",
        "satisfaction_surveys",
        ["ticket_id", "resolution"],
        unique=True,
    )
    op.create_index(
        "ix_satisfaction_surveys_due", "satisfaction_surveys", ["sent_at", "send_after"]
    )


def downgrade() -> None:
    op.drop_table("satisfaction_surveys")
    op.drop_table("analytics_rollups")
    op.drop_index("ix_ticket_facts_created", table_name="ticket_facts")
    op.drop_index("ix_ticket_facts_assignee_status", table_name="ticket_facts")
    op.drop_index("ix_ticket_facts_status_priority_created", table_name="ticket_facts")
    op.drop_table("ticket_facts")
