"""Every workflow class the worker registers (append yours)."""

from __future__ import annotations

WORKFLOWS: list[type] = []

# Platform: the echo workflow of the smoke test and the benchmark's raw rate.
from workflows.ping import PingWorkflow  # noqa: E402

WORKFLOWS.append(PingWorkflow)

# Attachments: quarantine until clamd's verdict (until the ticket workflow runs the scan).
from workflows.attachment_scan import AttachmentScanWorkflow  # noqa: E402

WORKFLOWS.append(AttachmentScanWorkflow)

# Tickets: one durable workflow per ticket.
from workflows.ticket import TicketWorkflow  # noqa: E402

WORKFLOWS.append(TicketWorkflow)

# Audit: anchors the audit chain's head outside the database (a Temporal schedule).
from workflows.audit_anchor import AuditAnchorWorkflow  # noqa: E402

WORKFLOWS.append(AuditAnchorWorkflow)

# Compliance: the daily HIPAA self-check (a Temporal schedule).
from workflows.compliance import ComplianceWorkflow  # noqa: E402

WORKFLOWS.append(ComplianceWorkflow)
