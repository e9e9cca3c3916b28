"""The highest priority is CRITICAL (the seed's Tickets CHECK), no longer URGENT.

Revision ID: 0004
Revises: 0003

Rows move forward: tickets, the SLA policy and the escalation rules of that priority, and
the priority values inside ticket history entries (`priority` old/new of an edit,
`from_priority`/`to_priority` of an SLA recompute), so the timeline a caller reads names
only priorities the API knows. The audit log is left as written: it is hash-chained, and
rewriting it would break the chain (its rows say URGENT for changes made before this).

Each table's CHECK is dropped before its rows change (the old one refuses CRITICAL) and
recreated after (the new one refuses URGENT). On SQLite each batch copies the table.

A ticket workflow already running keeps "URGENT" in its own state until its priority next
changes; nothing was released before this revision, so only development data has such runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD, NEW = "URGENT", "CRITICAL"
# (table, CHECK name) of every column holding a priority.
PRIORITY_TABLES = (
    ("tickets", "ck_tickets_priority"),
    ("sla_policies", "ck_sla_policies_priority"),
    ("escalation_rules", "ck_escalation_rules_priority"),
)
# Keys of a history entry's `changes` whose value (or old/new pair) is a priority.
HISTORY_PRIORITY_KEYS = ("priority", "from_priority", "to_priority")


def _check(value: str) -> str:
    return f"priority IN ('LOW', 'MEDIUM', 'HIGH', '{value}')"


def _rename_priority(old: str, new: str) -> None:
    for table, check in PRIORITY_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(check), type_="check")
        # `table` comes from the constant PRIORITY_TABLES, never from input.
        update = f"UPDATE {table} SET priority = :new WHERE priority = :old"  # noqa: S608
        op.execute(sa.text(update).bindparams(new=new, old=old))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_check_constraint(op.f(check), _check(new))
    _rename_in_history(old, new)


def _swap(value: object, old: str, new: str) -> object:
    if value == old:
        return new
    if isinstance(value, dict):
        return {k: (new if v == old and k in ("old", "new") else v) for k, v in value.items()}
    return value


def _rename_in_history(old: str, new: str) -> None:
    """Rewrite the priority values of history entries (JSON), row by row: the same code on
    SQLite and PostgreSQL, and only rows whose text names the old value are read."""
    history = sa.table(
        "ticket_history", sa.column("id", sa.Uuid()), sa.column("changes", sa.JSON())
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(history.c.id, history.c.changes).where(
            sa.cast(history.c.changes, sa.Text).like(f"%{old}%")
        )
    ).all()
    for row_id, changes in rows:
        if not isinstance(changes, dict):
            continue
        updated = dict(changes)
        for key in HISTORY_PRIORITY_KEYS:
            if key in updated:
                updated[key] = _swap(updated[key], old, new)
        if updated != changes:
            bind.execute(history.update().where(history.c.id == row_id).values(changes=updated))


def upgrade() -> None:
    _rename_priority(OLD, NEW)


def downgrade() -> None:
    _rename_priority(NEW, OLD)
