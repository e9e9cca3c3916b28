"""The daily HIPAA self-check (`helpdesk.compliance`): run the report, export it as metrics
and mail it to every active administrator. The mail names controls and counts only, and
links nowhere: the detail is `helpdesk compliance check` on a trusted host.

Idempotent enough for a retry: the report is recomputed and the metrics set again; the mail
is sent once per day and administrator (an audit row `compliance.reported` for the day marks
it sent, written after the sends: a crash in between mails twice rather than never).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from helpdesk import compliance
from helpdesk.email import EmailMessage
from helpdesk.rules.activity_contracts import ActivityName, ComplianceSummary
from helpdesk.runtime import Runtime
from helpdesk.services import users
from models.audit import AuditLog
from models.enums import Role
from models.user import User

SYSTEM_ROLE = "SYSTEM"


def summary_mail(
    report_ok: bool, failing: list[str], warnings: list[str], day: str
) -> tuple[str, str]:
    """Subject and body of the administrators' mail (controls and counts, no PHI)."""
    subject = f"Help desk compliance {day}: " + (
        "all controls pass" if report_ok else f"{len(failing)} failing"
    )
    lines = [f"The daily HIPAA self-check ran on {day}."]
    lines.append("Failing controls: " + (", ".join(failing) if failing else "none"))
    lines.append("Warnings: " + (", ".join(warnings) if warnings else "none"))
    lines.append("Run `helpdesk compliance check` for the detail.")
    return subject, "\n".join(lines) + "\n"


log = logging.getLogger("helpdesk.activities.compliance")


class ComplianceActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name=ActivityName.COMPLIANCE_REPORT)
    async def compliance_report(self) -> ComplianceSummary:
        try:
            return await self._report()
        except (SQLAlchemyError, OSError) as exc:
            # The database is not there yet (a worker started before `helpdesk migrate`) or
            # not reachable now: one line, no traceback; the retry and tomorrow try again.
            log.warning("compliance self-check not run: %s", type(exc).__name__)
            raise ApplicationError(
                f"compliance self-check not run ({type(exc).__name__})",
                type="ComplianceUnavailable",
                category=ApplicationErrorCategory.BENIGN,
            ) from None

    async def _report(self) -> ComplianceSummary:
        runtime = self.runtime
        report = await compliance.run_checks(runtime)
        compliance.export_metrics(report)
        failing = report.failing()
        warnings = [c.name for c in report.controls if c.status == "warn"]
        day = report.generated_at.date().isoformat()
        async with runtime.database.read() as session:
            sent = await session.scalar(
                select(AuditLog.seq).where(
                    AuditLog.action == "compliance.reported",
                    AuditLog.details["day"].as_string() == day,
                )
            )
            admins = list(
                await session.scalars(
                    select(User).where(
                        User.role == Role.ADMINISTRATOR.value, User.is_active.is_(True)
                    )
                )
            )
            addresses = [(u.id, (await users.view(session, runtime, u)).email) for u in admins]
        mailed = 0
        if sent is None:
            subject, body = summary_mail(report.ok, failing, warnings, day)
            for user_id, address in addresses:
                await runtime.email.send(
                    EmailMessage(
                        to=address,
                        subject=subject,
                        body=body,
                        message_key=f"compliance:{day}:{user_id}",
                    )
                )
                mailed += 1
            async with runtime.database.transaction() as session:
                await runtime.audit.record(
                    session,
                    "compliance.reported",
                    table="compliance",
                    actor_role=SYSTEM_ROLE,
                    details={"day": day, "ok": report.ok, "failing": failing, "mailed": mailed},
                )
        return ComplianceSummary(
            at=report.generated_at, ok=report.ok, failing=failing, warnings=warnings, mailed=mailed
        )
