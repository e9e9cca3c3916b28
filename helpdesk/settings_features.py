"""Settings of the help desk's features: tickets and their commands, SLA, analytics and
surveys, email and push, attachments, comments and the compliance self-check. Groups of
`helpdesk.settings.Settings` (never used alone)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import NoDecode


class EmailBackendName(StrEnum):
    CONSOLE = "console"
    FILE = "file"
    SMTP = "smtp"
    SENDGRID = "sendgrid"


class TicketSettings(BaseModel):
    """Ticket assignment and lists."""

    auto_assign_on_create: bool = Field(True, description="Assign new tickets automatically")
    max_page_size: int = Field(100, description="Largest page a list returns")


class AnalyticsSettings(BaseModel):
    """Analytics, de-identified exports and satisfaction surveys."""

    analytics_min_cell_size: int = Field(
        5, ge=1, description="Analytics figures of fewer tickets are suppressed (k)"
    )
    analytics_exports_per_hour: int = Field(
        10, ge=1, description="De-identified exports a user may start per hour"
    )
    analytics_export_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Tags an export may show (comma-separated; tags are free text)",
    )
    analytics_export_categories: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Category ids an export may show (comma-separated)",
    )

    csat_survey_delay_seconds: int = Field(
        0, ge=0, description="Delay between a resolution and its satisfaction survey email"
    )
    csat_survey_life_hours: int = Field(
        168, ge=1, le=24 * 90, description="How long a satisfaction survey link answers"
    )


class EmailSettings(BaseModel):
    """The mail backend and its credentials."""

    email_backend: EmailBackendName = Field(
        EmailBackendName.CONSOLE, description="Mail backend (console and file: not in production)"
    )
    email_from: str = Field("helpdesk@localhost", description="Sender address")
    email_file_path: Path | None = Field(None, description="Mailbox file of the file backend")
    smtp_host: str = Field("127.0.0.1", description="SMTP host")
    smtp_port: int = Field(587, description="SMTP port")
    smtp_username: str | None = Field(None, description="SMTP user")
    smtp_password: SecretStr | None = Field(None, description="SMTP password")
    smtp_starttls: bool = Field(True, description="Require STARTTLS with certificate checks")
    sendgrid_api_key: SecretStr | None = Field(None, description="SendGrid API key")
    sendgrid_host: str = Field("https://api.sendgrid.com", description="SendGrid API host")


class PushSettings(BaseModel):
    """Socket.IO fan-out across processes."""

    redis_url: str | None = Field(
        None, description="Redis URL: Socket.IO fan-out and the shared auth rate limit"
    )


class TicketCommandSettings(BaseModel):
    """Ticket commands and workflows (added by the tickets area)."""

    ticket_create_max_in_flight: int = Field(
        32, gt=0, description="Ticket creations in flight per process; past it 503 at once"
    )
    ticket_number_block: int = Field(
        20,
        ge=1,
        le=1000,
        description="Ticket numbers a process reserves at a time (1: one write per ticket)",
    )
    ticket_command_max_in_flight: int = Field(
        256, gt=0, description="Ticket updates in flight per process; past it 503 at once"
    )
    ticket_command_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest a ticket creation or command takes, retries included (then 503)",
    )
    ticket_command_retries: int = Field(
        5, ge=1, description="Attempts of a command on UNAVAILABLE / RESOURCE_EXHAUSTED"
    )
    ticket_query_timeout_seconds: float = Field(
        2.0, gt=0, description="Longest wait for a ticket's live state on GET"
    )
    ticket_continue_as_new_after_events: int | None = Field(
        None, description="Force continue-as-new at this history length (default: server hint)"
    )
    ticket_reconcile_interval_seconds: float = Field(
        60.0, gt=0, description="How often the worker starts missing ticket workflows"
    )
    ticket_reconcile_window_hours: float = Field(
        72.0, gt=0, description="Tickets created this recently are checked by the reconciler"
    )


class SlaSettings(BaseModel):
    """SLA clocks, escalation and automations (added by the SLA area)."""

    sla_seconds_per_minute: float = Field(
        60.0, gt=0, description="Real seconds one SLA policy minute lasts (tests shrink it)"
    )
    sla_auto_close_minutes: int = Field(
        7 * 24 * 60, gt=0, description="Quiet period after which a RESOLVED ticket closes itself"
    )
    sla_at_risk_percent: int = Field(
        75, gt=0, lt=100, description="Share of a target after which a ticket is at risk"
    )


class CommunicationSettings(BaseModel):
    """Email and push delivery (added by the communication area)."""

    smtp_ca_file: Path | None = Field(
        None, description="CA bundle trusted for SMTP STARTTLS (default: the system CAs)"
    )
    smtp_timeout_seconds: float = Field(15.0, gt=0, description="SMTP connect/command timeout")
    sendgrid_timeout_seconds: float = Field(15.0, gt=0, description="SendGrid request timeout")
    push_redis_channel: str = Field(
        "helpdesk-socketio", description="Redis pub/sub channel shared by API replicas and workers"
    )
    push_session_check_seconds: float = Field(
        30.0, gt=0, description="How often live sockets re-check their login session"
    )


class AttachmentSettings(BaseModel):
    """Attachments: limits, types, the virus scanner, the store."""

    max_upload_bytes: int = Field(
        25 * 1024 * 1024, gt=0, description="Largest attachment accepted (bytes); 413 past it"
    )
    attachment_allowed_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "application/pdf",
            "image/png",
            "image/jpeg",
            "image/gif",
            "text/plain",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ],
        description="MIME types accepted, decided by content sniffing (comma-separated)",
    )
    clamd_address: str = Field(
        "127.0.0.1:3310", description="clamd: TCP host:port, or a unix socket path (/...)"
    )
    clamd_timeout_seconds: float = Field(60.0, gt=0, description="Timeout of one clamd call")
    dev_clamd: bool = Field(
        True, description="`helpdesk dev` starts clamd on clamd_address when it is installed"
    )
    attachment_storage: str = Field(
        "local", pattern="^(local|azure)$", description="Attachment store: local or azure"
    )
    attachments_dir: Path | None = Field(
        None, description="Local attachment store (default: var/attachments)"
    )
    azure_storage_connection_string: SecretStr | None = Field(
        None, description="Azure Storage connection string of the azure attachment store"
    )
    azure_storage_container: str = Field(
        "attachments", description="Blob container of the azure attachment store"
    )


class ComplianceSettings(BaseModel):
    """The HIPAA self-check (`helpdesk compliance check`)."""

    compliance_backup_max_age_hours: int = Field(
        26, gt=0, description="Self-check: the newest backup must be younger (hours)"
    )
    compliance_restore_drill_max_age_days: int = Field(
        90, gt=0, description="Self-check: the last restore drill must be younger (days)"
    )
    compliance_inactive_account_days: int = Field(
        90, gt=0, description="Self-check: active accounts unused this long are reported"
    )
    compliance_interval_hours: int = Field(
        24, gt=0, description="How often the compliance schedule runs the self-check"
    )


class CommentSettings(BaseModel):
    """Comments (added by the comments area)."""

    reopen_on_requester_reply: bool = Field(
        True, description="A requester's public reply reopens their RESOLVED ticket"
    )
    comment_max_chars: int = Field(
        20_000, gt=0, le=200_000, description="Longest comment body accepted (characters)"
    )
