"""Every activity the worker registers, built around the process's Runtime (append yours)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.attachments import AttachmentActivities
from activities.audit import AuditActivities
from activities.comments import CommentActivities
from activities.compliance import ComplianceActivities
from activities.notifications import NotificationActivities
from activities.sla import SlaActivities
from activities.tickets import TicketActivities
from helpdesk.runtime import Runtime


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    """The bound activity methods of every activity class, sharing `runtime`."""
    activities: list[Callable[..., Any]] = []
    # Communication: email notifications and Socket.IO pushes.
    notifications = NotificationActivities(runtime)
    activities += [
        notifications.send_email,
        notifications.publish_event,
        notifications.notify_change,
    ]
    # Attachments: the clamd scan activity.
    activities += AttachmentActivities(runtime).all()
    # Tickets: the one write of every accepted change.
    ticket_activities = TicketActivities(runtime, notifications)
    activities += [ticket_activities.create_ticket, ticket_activities.persist_change]
    # SLA: policy snapshots, SLA history/due dates, who an escalation notifies.
    activities += SlaActivities(runtime).all()
    # Comments: the timeline entry of an accepted comment.
    activities += [CommentActivities(runtime).record_comment]
    # Audit: seal the chain's head and append it outside the database.
    activities += [AuditActivities(runtime).anchor_audit_chain]
    # Compliance: the daily HIPAA self-check.
    activities += [ComplianceActivities(runtime).compliance_report]
    return activities
