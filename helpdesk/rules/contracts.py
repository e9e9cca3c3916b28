"""Inputs, outputs and state of the ticket workflow (pydantic, through the encrypted
pydantic data converter).

The workflow's state holds no PHI: ids, status, priority, flags and counters only. Title,
description and notes travel only inside command payloads (encrypted by the payload codec)
on their way to the activity that seals them into the database.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from helpdesk.rules.notify import NotifyBatch
from helpdesk.rules.sla import SlaState
from helpdesk.rules.transitions import Status

# The role of changes the help desk makes by itself (timers, automations, re-assignment
# when an agent is deactivated). It may do what staff may do.
SYSTEM_ROLE = "SYSTEM"

# The names the API uses to reach the workflows (the workflows register the same names; a
# test holds the two together), so that callers need the contracts, never workflow code.
TICKET_WORKFLOW = "TicketWorkflow"
ATTACHMENT_SCAN_WORKFLOW = "AttachmentScan"
TICKET_STATE_QUERY = "state"


class Failure(StrEnum):
    """The types of the application errors workflows and activities raise (what a caller's
    `err.cause.type` says), mapped to HTTP answers by `ticket_workflow.domain_error`."""

    TICKET_GONE = "TicketGone"
    INVALID_TRANSITION = "InvalidTransition"
    PERMISSION_DENIED = "PermissionDenied"
    VALIDATION_FAILED = "ValidationFailed"
    PERSIST_FAILED = "PersistFailed"
    NO_AGENT_AVAILABLE = "NoAgentAvailable"
    AGENT_NOT_ASSIGNABLE = "AgentNotAssignable"


class TicketCommand(StrEnum):
    """The ticket workflow's updates."""

    OPENED = "opened"
    CHANGE_STATUS = "change_status"
    ASSIGN = "assign"
    EDIT = "edit"
    ESCALATE = "escalate"
    ADD_COMMENT = "add_comment"


def attachment_scan_workflow_id(attachment_id: uuid.UUID | str) -> str:
    """Business-key id: one scan workflow per attachment (no PHI)."""
    return f"attachment-scan-{attachment_id}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Actor(_Model):
    """Who asked for a change, and from where (for history and the audit row)."""

    id: uuid.UUID | None = None
    role: str
    ip: str | None = None
    user_agent: str | None = None
    http_request_id: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(role=SYSTEM_ROLE)


class TicketState(_Model):
    """What the workflow knows about its ticket (no PHI). Returned by every update and by
    the `state` query; carried whole across continue-as-new."""

    ticket_id: uuid.UUID
    number: int
    requester_id: uuid.UUID
    status: Status = Status.OPEN
    priority: str = "MEDIUM"
    assignee_id: uuid.UUID | None = None
    category_id: uuid.UUID | None = None
    due_date: datetime | None = None
    escalated: bool = False
    escalation_level: int = 0
    # Accepted changes so far (the ticket row's `version` follows it).
    version: int = 0
    # Request ids already applied, newest last; bounded by TicketConfig.dedupe_window.
    seen_request_ids: list[str] = Field(default_factory=list)
    # Set when the ticket's row was found disposed of: the workflow then ends.
    gone: bool = False
    # SLA clocks (helpdesk.rules.sla; set at creation by the create activity, kept across
    # continue-as-new). No PHI: targets, instants and fired thresholds.
    sla: SlaState | None = None


class TicketConfig(_Model):
    """Knobs of one ticket workflow, carried across continue-as-new. Frozen: equal ones are
    one object across the tickets a worker holds (`TicketInput`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Continue as new once the history reaches this many events (None: when the server
    # suggests it). Tests force it small.
    continue_as_new_after_events: int | None = None
    dedupe_window: int = 500
    activity_timeout_seconds: int = 30


class SealedTicket(_Model):
    """A ticket to create, as the API prepared it: the text sealed under the ticket's own
    data key (the key travels wrapped), search and tag tokens already blind. No plaintext
    PHI: the workflow's history keeps this input for the life of the run. The create
    activity writes it as is, once (`helpdesk.services.tickets.create_row`)."""

    ticket_id: uuid.UUID
    number: int
    requester: Actor
    priority: str
    category_id: uuid.UUID | None = None
    due_date: datetime | None = None
    key_id: uuid.UUID
    kek_id: str
    wrapped_key: str  # base64
    title_enc: str  # base64
    description_enc: str | None = None  # base64
    search_tokens: list[str] = Field(default_factory=list)
    # (tag token, sealed tag) per normalised tag
    tags: list[tuple[str, str]] = Field(default_factory=list)
    auto_assign: bool = False
    # The Idempotency-Key the ticket was created under, with its request's fingerprint.
    idempotency_key: str | None = None
    fingerprint: str | None = None


class TicketCreated(_Model):
    """What the create activity wrote: the row's state the workflow continues from."""

    applied: bool  # False: the row was already there (a retried attempt)
    assignee_id: uuid.UUID | None = None
    due_date: datetime | None = None
    sla: SlaState | None = None
    version: int = 0
    # The activity sent the creation's notifications (False: the workflow sends them).
    notified: bool = False


class TicketInput(_Model):
    state: TicketState
    config: TicketConfig = Field(default_factory=TicketConfig)
    # Set when the workflow is started to create its ticket: its first step writes the row.
    # None when it is started for a row that exists (reconciliation) or continued as new.
    new: SealedTicket | None = None

    @field_validator("config")
    @classmethod
    def _shared_config(cls, config: TicketConfig) -> TicketConfig:
        # Every ticket of a deployment runs with the same few knobs: one object for all.
        found = _CONFIGS.setdefault(config.model_dump_json(), config)
        if len(_CONFIGS) > 64:  # tests vary them; a deployment has one
            _CONFIGS.clear()
        return found


_CONFIGS: dict[str, TicketConfig] = {}


class OpenRequest(_Model):
    """The update sent with the workflow's start: answers once the workflow runs."""

    request_id: str


class StatusChange(_Model):
    request_id: str
    actor: Actor
    status: Status
    note: str | None = None  # PHI: sealed into history by the activity


class AssignRequest(_Model):
    request_id: str
    actor: Actor
    agent_id: uuid.UUID | None = None
    auto: bool = False


class TicketEdits(_Model):
    """Fields an edit sets; only those named in `fields` are applied (None clears)."""

    fields: list[str] = Field(default_factory=list)
    title: str | None = None  # PHI
    description: str | None = None  # PHI
    priority: str | None = None
    category_id: uuid.UUID | None = None
    due_date: datetime | None = None
    tags: list[str] | None = None


class EditRequest(_Model):
    request_id: str
    actor: Actor
    edits: TicketEdits


class EscalateRequest(_Model):
    request_id: str
    actor: Actor
    escalated_to: uuid.UUID | None = None
    reason: str | None = None  # a code such as "manual" or "sla_breach"; never free text


class FieldUpdates(_Model):
    """Row fields an activity writes (only those in `fields`)."""

    fields: list[str] = Field(default_factory=list)
    status: Status | None = None
    priority: str | None = None
    assignee_id: uuid.UUID | None = None
    category_id: uuid.UUID | None = None
    due_date: datetime | None = None
    escalated: bool | None = None
    escalation_level: int | None = None
    escalated_to: uuid.UUID | None = None
    tags: list[str] | None = None
    title: str | None = None  # PHI, sealed by the activity
    description: str | None = None  # PHI, sealed by the activity


class PersistChange(_Model):
    """One accepted change: the activity writes row + history + audit in one transaction,
    once per `event_key` (the request id)."""

    ticket_id: uuid.UUID
    event_key: str
    actor: Actor
    action: str
    updates: FieldUpdates
    # old → new per field, without PHI ({"title": {"changed": true}} for text fields).
    changes: dict[str, Any] = Field(default_factory=dict)
    note: str | None = None  # PHI, sealed into the history entry
    auto_assign: bool = False  # pick the least-loaded agent inside the transaction
    version: int = 0


class PersistResult(_Model):
    applied: bool  # False when the event was already written (a retried activity)
    assignee_id: uuid.UUID | None = None
    # The change's notifications, chosen once by the activity from the row as the change
    # left it (`helpdesk.rules.notify.notifications_for`): its push went out right after
    # the commit (before the update answers); what is left here (the emails, and a push
    # that could not go out) the workflow's main loop sends.
    notifications: NotifyBatch = Field(default_factory=NotifyBatch)
    # Who an escalation went to, as written on the row (the activity picks a manager when
    # the escalation named nobody).
    escalated_to: uuid.UUID | None = None


class ChangeEvent(_Model):
    """What a handler accepted; the main loop's side effects (SLA, notifications) read it."""

    action: str
    request_id: str
    changes: dict[str, Any] = Field(default_factory=dict)


class CommentAdded(BaseModel):
    """The `add_comment` update: ids and flags only. The body is already sealed in the
    database; it never travels through the workflow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(min_length=1, max_length=90)  # room for the ":reopen" suffix
    comment_id: uuid.UUID
    author_id: uuid.UUID
    author_role: str
    is_internal: bool
    # The setting as the API read it when the comment was made: carried in the command so
    # the workflow's decision is deterministic and visible in its history.
    reopen_on_requester_reply: bool = True
    # Where the request came from, for the audit rows the activities write.
    ip: str | None = None
    user_agent: str | None = None
    http_request_id: str | None = None

    def actor(self) -> Actor:
        return Actor(
            id=self.author_id,
            role=self.author_role,
            ip=self.ip,
            user_agent=self.user_agent,
            http_request_id=self.http_request_id,
        )


class ScanRequest(BaseModel):
    """Input of the scan activity and of AttachmentScanWorkflow (ids only: no PHI)."""

    attachment_id: uuid.UUID
    ticket_id: uuid.UUID | None = None
