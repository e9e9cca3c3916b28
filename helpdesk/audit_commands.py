"""Operator commands on the audit chain that build their own runtime (the CLI's and a
restore's), kept apart from `helpdesk.audit_anchor` so that the runtime (which exports the
anchor's age as a metric) does not import back into itself."""

from __future__ import annotations

from helpdesk.audit_anchor import anchor_now, anchor_store
from helpdesk.runtime import build_runtime
from helpdesk.settings import Settings


async def anchor_database(settings: Settings) -> str:
    """Anchor the configured database's chain now (`helpdesk audit anchor`, and after a
    restore: the restored chain, authentic as the backup's seals prove, becomes this site's
    newest anchor). Returns one line saying where."""
    runtime = build_runtime(settings)
    store = anchor_store(settings)
    try:
        async with runtime.database.read() as session:
            anchor = await anchor_now(
                runtime.audit, settings.secret_bytes("audit_key"), session, store
            )
    finally:
        await runtime.close()
    return f"audit chain anchored at row {anchor.rows} (head {anchor.head}) in {store.describe()}"
