"""Inputs, outputs and names of the activities the workflows run (pydantic, through the
encrypted pydantic data converter). Workflows reach activities by these names only: no
workflow imports an activity module (or, through it, the database stack); the worker
registers the activities under the same names (`activities.registry`; a test holds the two
together). The ticket workflow's own state and commands are in `helpdesk.rules.contracts`.
No PHI in any of them: ids, clock names, flags, counts and times."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from helpdesk.rules.contracts import Actor
from helpdesk.rules.notify import PushInput
from helpdesk.rules.sla import SlaDueDates


class ActivityName(StrEnum):
    CREATE_TICKET = "create_ticket"
    PERSIST_TICKET_CHANGE = "persist_ticket_change"
    LOAD_SLA_POLICY = "load_sla_policy"
    RECORD_SLA = "record_sla"
    RECORD_SLA_THEN_PUSH = "record_sla_then_push"
    SLA_RECIPIENTS = "sla_recipients"
    RECORD_TICKET_COMMENT = "record_ticket_comment"
    SEND_EMAIL = "send_email"
    NOTIFY_CHANGE = "notify_change"
    PUBLISH_EVENT = "publish_event"
    SCAN_ATTACHMENT = "scan_attachment"
    ANCHOR_AUDIT_CHAIN = "anchor_audit_chain"
    COMPLIANCE_REPORT = "compliance_report"


# --- SLA (activities.sla) -----------------------------------------------------------------


class LoadPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: str


class SlaHistoryEntry(BaseModel):
    """One SLA fact for the ticket's history (ids, clock names, numbers: no PHI)."""

    model_config = ConfigDict(extra="forbid")

    event_key: str = Field(min_length=1, max_length=100)
    action: str = Field(pattern=r"^sla\.[a-z_]+$", max_length=40)
    at: datetime
    changes: dict[str, str | float | int | bool | list[str] | None] = Field(default_factory=dict)


class SlaWrite(BaseModel):
    """History entries plus the SLA columns of the ticket row, written in one transaction."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: uuid.UUID
    entries: list[SlaHistoryEntry] = Field(default_factory=list)
    due: SlaDueDates
    breached_at: datetime | None = None


class SlaWriteAndPush(BaseModel):
    """An SLA write, then (after its commit) one push about the ticket."""

    model_config = ConfigDict(extra="forbid")

    write: SlaWrite
    push: PushInput


class SlaRecorded(BaseModel):
    model_config = ConfigDict(extra="forbid")

    new: int  # history entries that were new (0: a retry found them written)
    pushed: bool  # False: the push could not go out; the workflow sends it itself


class RecipientsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: uuid.UUID
    notify: list[str] = Field(default_factory=list)  # "assignee", "managers", "escalated_to"
    escalated_to: uuid.UUID | None = None


# --- comments (activities.comments) -------------------------------------------------------

COMMENT_ADDED = "comment_added"


class CommentRecord(BaseModel):
    """One accepted comment, as the workflow asks the activity to record it. No PHI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket_id: uuid.UUID
    event_key: str = Field(min_length=1, max_length=100)  # the command's request id
    comment_id: uuid.UUID
    actor: Actor
    internal: bool
    # The workflow decided (workflows.ticket_comments.on_comment) that this public staff
    # reply is the ticket's first response; the row's first_response_at is set once.
    first_response: bool = False
    version: int = 0


class CommentRecorded(BaseModel):
    applied: bool  # False when a retried activity found its entry already written


# --- attachment scan (activities.attachments) ---------------------------------------------

# ApplicationError types the scan raises (the workflow's retry policy lists the fatal ones).
SCANNER_UNAVAILABLE = "ScannerUnavailable"
SCAN_LIMIT_EXCEEDED = "ScanLimitExceeded"
FATAL_SCAN_ERRORS = ("not_found", "gone", "integrity_error", SCAN_LIMIT_EXCEEDED)


class ScanResult(BaseModel):
    """The verdict, for notifications: `scan_status` is CLEAN or INFECTED (or PENDING when
    the attachment was deleted before it could be scanned; see `deleted`)."""

    attachment_id: uuid.UUID
    ticket_id: uuid.UUID
    uploader_id: uuid.UUID
    scan_status: str
    is_internal: bool
    signature: str | None = None
    deleted: bool = False

    @property
    def outcome(self) -> str:
        """How the scan ended: ``gone`` (deleted before its verdict), ``clean``, ``infected``."""
        return "gone" if self.deleted else self.scan_status.lower()


# --- audit anchor and compliance (activities.audit, activities.compliance) ---------------


class AnchorRecord(BaseModel):
    """A sealed anchor: the chain had `rows` rows, the last with hash `head`, at `at`."""

    rows: int
    head: str
    at: datetime
    mac: str


class ComplianceSummary(BaseModel):
    """What the workflow records: when, whether every control passed, which failed."""

    at: datetime
    ok: bool
    failing: list[str]
    warnings: list[str]
    mailed: int
