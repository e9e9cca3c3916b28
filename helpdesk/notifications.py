"""Email notification kinds and their templates. No PHI can reach a template.

A template receives `TicketFacts`: ids, the ticket number, status, priority, escalation
level, which SLA clock: nothing a person wrote and nothing that names a person. The model
forbids extra fields, so a caller cannot hand a title, a comment or a name to a template
even by mistake; the body says what happened and links to the portal, where the reader
signs in and sees what their role allows. Links are built from
``settings.public_base_url``, never from a request's Host header.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from helpdesk.settings import Settings
from models.enums import Priority, TicketStatus

PRODUCT = "Help desk"


class NotificationKind(StrEnum):
    """Every email the help desk sends about a ticket."""

    TICKET_CREATED = "ticket_created"  # to the requester
    TICKET_ASSIGNED = "ticket_assigned"  # to the agent
    STATUS_CHANGED = "status_changed"  # to the requester (and the agent)
    PUBLIC_REPLY = "public_reply"  # to the other side of a public comment
    ESCALATED = "escalated"  # to whom the ticket was escalated
    SLA_WARNING = "sla_warning"  # to the agent / managers
    SLA_BREACH = "sla_breach"  # to the agent / managers
    ATTACHMENT_BLOCKED = "attachment_blocked"  # to the uploader of an infected file


class AccountEmailKind(StrEnum):
    """Emails about the account itself (sent by the auth routes, never via a workflow:
    their one-time token must not enter workflow history)."""

    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"


SlaClock = Literal["first_response", "resolution"]


class TicketFacts(BaseModel):
    """What a ticket email may say. Deliberately no free text and no personal data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket_id: uuid.UUID
    number: int = Field(ge=1)
    status: TicketStatus | None = None
    previous_status: TicketStatus | None = None
    priority: Priority | None = None
    escalation_level: int | None = Field(None, ge=0)
    sla_clock: SlaClock | None = None


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    body: str


_STATUS_WORDS = {
    TicketStatus.OPEN: "open",
    TicketStatus.IN_PROGRESS: "in progress",
    TicketStatus.RESOLVED: "resolved",
    TicketStatus.CLOSED: "closed",
}
_CLOCK_WORDS = {"first_response": "first response", "resolution": "resolution"}


def portal_url(settings: Settings, path: str) -> str:
    """An absolute portal link from the configured public base URL."""
    return settings.public_base_url.rstrip("/") + "/" + path.lstrip("/")


def ticket_link(settings: Settings, ticket_id: uuid.UUID) -> str:
    return portal_url(settings, f"tickets/{ticket_id}")


def _status(facts: TicketFacts) -> str:
    return _STATUS_WORDS[facts.status] if facts.status else "updated"


def _clock(facts: TicketFacts) -> str:
    return _CLOCK_WORDS[facts.sla_clock] if facts.sla_clock else "service level"


def _created(f: TicketFacts) -> tuple[str, str]:
    return (
        f"Ticket #{f.number} received",
        f"We received your ticket #{f.number}. A member of our support team will look at it.",
    )


def _assigned(f: TicketFacts) -> tuple[str, str]:
    return (
        f"Ticket #{f.number} assigned to you",
        f"Ticket #{f.number} has been assigned to you.",
    )


def _status_changed(f: TicketFacts) -> tuple[str, str]:
    before = f" (was {_STATUS_WORDS[f.previous_status]})" if f.previous_status else ""
    return (
        f"Ticket #{f.number} is now {_status(f)}",
        f"The status of ticket #{f.number} changed to {_status(f)}{before}.",
    )


def _public_reply(f: TicketFacts) -> tuple[str, str]:
    return (
        f"New reply on ticket #{f.number}",
        f"There is a new reply on ticket #{f.number}.",
    )


def _escalated(f: TicketFacts) -> tuple[str, str]:
    level = f" to level {f.escalation_level}" if f.escalation_level else ""
    return (
        f"Ticket #{f.number} escalated{level}",
        f"Ticket #{f.number} has been escalated{level} and needs your attention.",
    )


def _sla_warning(f: TicketFacts) -> tuple[str, str]:
    return (
        f"Ticket #{f.number}: {_clock(f)} deadline approaching",
        f"The {_clock(f)} deadline of ticket #{f.number} is approaching.",
    )


def _sla_breach(f: TicketFacts) -> tuple[str, str]:
    return (
        f"Ticket #{f.number}: {_clock(f)} deadline missed",
        f"The {_clock(f)} deadline of ticket #{f.number} has passed.",
    )


def _attachment_blocked(f: TicketFacts) -> tuple[str, str]:
    # Never the file's name (PHI): the uploader knows which file they added.
    return (
        f"Ticket #{f.number}: attachment blocked",
        f"An attachment you added to ticket #{f.number} was blocked by the virus scanner "
        "and has been removed. Please do not send that file again.",
    )


_TICKET_TEMPLATES: dict[NotificationKind, Callable[[TicketFacts], tuple[str, str]]] = {
    NotificationKind.TICKET_CREATED: _created,
    NotificationKind.TICKET_ASSIGNED: _assigned,
    NotificationKind.STATUS_CHANGED: _status_changed,
    NotificationKind.PUBLIC_REPLY: _public_reply,
    NotificationKind.ESCALATED: _escalated,
    NotificationKind.SLA_WARNING: _sla_warning,
    NotificationKind.SLA_BREACH: _sla_breach,
    NotificationKind.ATTACHMENT_BLOCKED: _attachment_blocked,
}

_FOOTER = (
    "For your privacy this message does not include the details. "
    "Sign in to the portal to read them."
)


def render_ticket_email(
    kind: NotificationKind, facts: TicketFacts, settings: Settings
) -> RenderedEmail:
    """Subject and body of a ticket notification: what happened, and a portal link."""
    headline, sentence = _TICKET_TEMPLATES[kind](facts)
    body = (
        f"Hello,\n\n{sentence}\n\nView the ticket: {ticket_link(settings, facts.ticket_id)}\n\n"
        f"{_FOOTER}\n\n-- {PRODUCT}\n"
    )
    return RenderedEmail(subject=f"[{PRODUCT}] {headline}", body=body)


def render_account_email(kind: AccountEmailKind, token: str, settings: Settings) -> RenderedEmail:
    """Email verification or password reset: a one-time link, its lifetime, nothing else.

    The token rides in the URL fragment (``#token=``), so it never reaches a server log or a
    Referer header; the portal page posts it to `/api/v1/auth/verify-email` or
    `/api/v1/auth/reset-password` (the same link shape as `helpdesk.services.auth`).
    """
    minutes = settings.one_time_token_ttl_seconds // 60
    if kind is AccountEmailKind.VERIFY_EMAIL:
        link = portal_url(settings, f"verify-email#token={quote(token, safe='')}")
        return RenderedEmail(
            subject=f"[{PRODUCT}] Confirm your email address",
            body=(
                "Hello,\n\nPlease confirm your email address by opening this link within "
                f"{minutes} minutes:\n\n{link}\n\nIf you did not create an account, ignore "
                f"this message.\n\n-- {PRODUCT}\n"
            ),
        )
    link = portal_url(settings, f"reset-password#token={quote(token, safe='')}")
    return RenderedEmail(
        subject=f"[{PRODUCT}] Reset your password",
        body=(
            "Hello,\n\nSomeone asked to reset the password of this account. To choose a new "
            f"password, open this link within {minutes} minutes:\n\n{link}\n\nIf it was not "
            "you, ignore this message; your password stays unchanged. Resetting signs out "
            f"every session.\n\n-- {PRODUCT}\n"
        ),
    )
