"""SLA policies, business calendars, escalation rules; SLA columns on tickets; defaults.

Revision ID: 0002
Revises: 0001

Defaults seeded on a fresh install (administrators change them through /api/v1):

| priority | first response | resolution | calendar |
| --- | --- | --- | --- |
| URGENT | 30 min | 4 h | 24x7 |
| HIGH | 2 h | 8 h | 24x7 |
| MEDIUM | 8 h | 3 days | 24x7 |
| LOW | 24 h | 5 days | 24x7 |

Escalation rules, for every priority:
- first response: 75% → level 1, notify the assignee; 100% (breach) → level 2, escalate to
  the managers and notify them.
- resolution: 75% → level 1, notify the assignee; 100% (breach) → level 2, escalate to the
  managers and notify them; 150% → level 3, escalate again, notify the managers and raise
  the priority one step.

A "Weekdays 09:00-17:00 UTC" calendar is also created, attached to no policy, as a starting
point for business-hours SLAs.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NS = uuid.UUID("6f1d2c9e-5a43-4c36-9a55-2d1f0b9e7a10")
PRIORITIES = ("LOW", "MEDIUM", "HIGH", "URGENT")
DEFAULT_TARGETS = {  # priority: (first response minutes, resolution minutes)
    "URGENT": (30, 4 * 60),
    "HIGH": (2 * 60, 8 * 60),
    "MEDIUM": (8 * 60, 3 * 24 * 60),
    "LOW": (24 * 60, 5 * 24 * 60),
}
DEFAULT_RULES = (  # clock, percent, level, actions
    ("first_response", 75, 1, ["notify_assignee"]),
    ("first_response", 100, 2, ["escalate", "notify_managers"]),
    ("resolution", 75, 1, ["notify_assignee"]),
    ("resolution", 100, 2, ["escalate", "notify_managers"]),
    ("resolution", 150, 3, ["escalate", "notify_managers", "raise_priority"]),
)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "business_calendars",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("weekly_hours", sa.JSON(), nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_business_calendars")),
        sa.UniqueConstraint("name", name=op.f("uq_business_calendars_name")),
    )
    op.create_table(
        "sla_policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("first_response_minutes", sa.Integer(), nullable=False),
        sa.Column("resolution_minutes", sa.Integer(), nullable=False),
        sa.Column("calendar_id", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "priority IN ('LOW', 'MEDIUM', 'HIGH', 'URGENT')", name=op.f("ck_sla_policies_priority")
        ),
        sa.CheckConstraint(
            "first_response_minutes > 0", name=op.f("ck_sla_policies_first_response_positive")
        ),
        sa.CheckConstraint(
            "resolution_minutes > 0", name=op.f("ck_sla_policies_resolution_positive")
        ),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["business_calendars.id"],
            name=op.f("fk_sla_policies_calendar_id_business_calendars"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_policies")),
        sa.UniqueConstraint("priority", name=op.f("uq_sla_policies_priority")),
    )
    op.create_table(
        "escalation_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("clock", sa.String(length=20), nullable=False),
        sa.Column("threshold_percent", sa.Integer(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("target_user_id", sa.Uuid(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(
            "priority IN ('LOW', 'MEDIUM', 'HIGH', 'URGENT')",
            name=op.f("ck_escalation_rules_priority"),
        ),
        sa.CheckConstraint(
            "clock IN ('first_response', 'resolution')", name=op.f("ck_escalation_rules_clock")
        ),
        sa.CheckConstraint(
            "threshold_percent > 0 AND threshold_percent <= 1000",
            name=op.f("ck_escalation_rules_threshold"),
        ),
        sa.CheckConstraint("level > 0", name=op.f("ck_escalation_rules_level_positive")),
        sa.ForeignKeyConstraint(
            ["target_user_id"],
            ["users.id"],
            name=op.f("fk_escalation_rules_target_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_rules")),
        sa.UniqueConstraint("priority", "clock", "threshold_percent", name="uq_escalation_rule"),
    )
    with op.batch_alter_table("escalation_rules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_escalation_rules_priority", ["priority", "clock", "threshold_percent"], unique=False
        )

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("sla_at_risk_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sla_breached_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_tickets_sla_breached", ["sla_breached_at", "id"], unique=False)
        batch_op.create_index("ix_tickets_sla_at_risk", ["sla_at_risk_at", "id"], unique=False)

    _seed()


def _seed() -> None:
    now = datetime.now(UTC)
    calendars = sa.table(
        "business_calendars",
        sa.column("id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("time_zone", sa.String()),
        sa.column("weekly_hours", sa.JSON()),
        sa.column("holidays", sa.JSON()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        calendars,
        [
            {
                "id": uuid.uuid5(_NS, "calendar:weekdays-utc"),
                "name": "Weekdays 09:00-17:00 UTC",
                "time_zone": "UTC",
                "weekly_hours": {
                    d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")
                },
                "holidays": [],
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    policies = sa.table(
        "sla_policies",
        sa.column("id", sa.Uuid()),
        sa.column("priority", sa.String()),
        sa.column("first_response_minutes", sa.Integer()),
        sa.column("resolution_minutes", sa.Integer()),
        sa.column("calendar_id", sa.Uuid()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        policies,
        [
            {
                "id": uuid.uuid5(_NS, f"policy:{p}"),
                "priority": p,
                "first_response_minutes": DEFAULT_TARGETS[p][0],
                "resolution_minutes": DEFAULT_TARGETS[p][1],
                "calendar_id": None,
                "created_at": now,
                "updated_at": now,
            }
            for p in PRIORITIES
        ],
    )
    rules = sa.table(
        "escalation_rules",
        sa.column("id", sa.Uuid()),
        sa.column("priority", sa.String()),
        sa.column("clock", sa.String()),
        sa.column("threshold_percent", sa.Integer()),
        sa.column("actions", sa.JSON()),
        sa.column("level", sa.Integer()),
        sa.column("target_user_id", sa.Uuid()),
        sa.column("enabled", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        rules,
        [
            {
                "id": uuid.uuid5(_NS, f"rule:{p}:{clock}:{pct}"),
                "priority": p,
                "clock": clock,
                "threshold_percent": pct,
                "actions": actions,
                "level": level,
                "target_user_id": None,
                "enabled": True,
                "created_at": now,
                "updated_at": now,
            }
            for p in PRIORITIES
            for clock, pct, level, actions in DEFAULT_RULES
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_sla_at_risk")
        batch_op.drop_index("ix_tickets_sla_breached")
        batch_op.drop_column("sla_breached_at")
        batch_op.drop_column("sla_at_risk_at")
        batch_op.drop_column("resolution_due_at")
        batch_op.drop_column("first_response_due_at")
    with op.batch_alter_table("escalation_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_escalation_rules_priority")
    op.drop_table("escalation_rules")
    op.drop_table("sla_policies")
    op.drop_table("business_calendars")
