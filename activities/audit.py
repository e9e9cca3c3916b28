"""The audit anchoring activity: seal the audit chain's head and append it outside the
database (`helpdesk.audit_anchor`). Its result, the sealed anchor, is recorded in the
anchoring workflow's history too: a second copy outside the database. Ids and hashes only.

A retried activity appends one more anchor line: harmless (anchors only ever move forward).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from helpdesk.audit_anchor import anchor_now, anchor_store
from helpdesk.rules.activity_contracts import ActivityName, AnchorRecord
from helpdesk.runtime import Runtime

log = logging.getLogger("helpdesk.audit")
ANCHOR_UNAVAILABLE = "AuditAnchorUnavailable"


class AuditActivities:
    """Audit activities around the process's Runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name=ActivityName.ANCHOR_AUDIT_CHAIN)
    async def anchor_audit_chain(self) -> AnchorRecord:
        runtime = self.runtime
        try:
            async with runtime.database.read() as session:
                anchor = await anchor_now(
                    runtime.audit,
                    runtime.settings.secret_bytes("audit_key"),
                    session,
                    anchor_store(runtime.settings),
                )
        except (SQLAlchemyError, OSError) as exc:
            # The database or the anchor file cannot be reached now: say so in one line
            # (no traceback), and let the retry policy and the next tick try again; a
            # verify meanwhile reports the anchor's age.
            log.warning("could not anchor the audit chain: %s", type(exc).__name__)
            raise ApplicationError(
                f"audit anchor not written ({type(exc).__name__})",
                type=ANCHOR_UNAVAILABLE,
                category=ApplicationErrorCategory.BENIGN,
            ) from None
        return AnchorRecord(rows=anchor.rows, head=anchor.head, at=anchor.at, mac=anchor.mac)
