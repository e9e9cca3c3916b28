"""Tickets (the read model the workflows keep current), tags, history and search tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps, new_id, utcnow
from models.enums import Priority, TicketStatus, check_in


class Ticket(Timestamps, Base):
    """A ticket's current state. Title and description are PHI, encrypted under the
    ticket's own data key; the workflow `ticket-<id>` owns every change."""

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(check_in("status", TicketStatus), name="status"),
        CheckConstraint(check_in("priority", Priority), name="priority"),
        # Listing: newest first within a status set, per requester, per assignee.
        Index("ix_tickets_status_created", "status", "created_at", "id"),
        Index("ix_tickets_created", "created_at", "id"),
        Index("ix_tickets_requester_created", "requester_id", "created_at", "id"),
        Index("ix_tickets_assignee_status", "assignee_id", "status", "created_at"),
        Index("ix_tickets_priority_created", "priority", "created_at", "id"),
        Index("ix_tickets_category_created", "category_id", "created_at", "id"),
        Index("ix_tickets_updated", "updated_at", "id"),
        Index("ix_tickets_due", "due_date", "id"),
        # Ticket list area: escalated tickets per status, newest first.
        Index("ix_tickets_escalated_status_created", "escalated", "status", "created_at", "id"),
        # Ticket list area: a status queue by due date (SLA order).
        Index("ix_tickets_status_due", "status", "due_date", "id"),
        Index("ix_tickets_sla_breached", "sla_breached_at", "id"),  # SLA area (0002)
        Index("ix_tickets_sla_at_risk", "sla_at_risk_at", "id"),  # SLA area (0002)
        # Ticket list area (0003): "is this ticket live?" answered from a small index, for
        # each row a keyword search walks or counts (not from the table's big rows).
        Index(
            "ix_tickets_live",
            "id",
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    number: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), unique=True)
    data_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("data_keys.id", ondelete="SET NULL")
    )
    title_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    description_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), default=TicketStatus.OPEN.value)
    priority: Mapped[str] = mapped_column(String(10), default=Priority.MEDIUM.value)
    priority_rank: Mapped[int] = mapped_column(Integer, default=2)
    category_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id"))
    requester_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    due_date: Mapped[datetime | None]
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated_at: Mapped[datetime | None]
    escalated_to: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    # --- SLA (migration 0002; kept current by activities.sla) -------------------------
    first_response_due_at: Mapped[datetime | None]
    resolution_due_at: Mapped[datetime | None]
    # When the nearest running clock reaches its at-risk mark; `sla=at_risk` lists read it.
    sla_at_risk_at: Mapped[datetime | None]
    # First breach of any clock (a fact that stays true after the ticket is answered).
    sla_breached_at: Mapped[datetime | None]


class TicketTag(Base):
    """A ticket's tag: a keyed blind token to filter by, the tag sealed under the ticket's
    data key to show (helpdesk.services.ticket_tags; migration 0005)."""

    __tablename__ = "ticket_tags"
    __table_args__ = (Index("ix_ticket_tags_token", "token", "ticket_id"),)

    ticket_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    tag_sealed: Mapped[str] = mapped_column(Text)


class TicketSearchToken(Base):
    """Keyed hashes of the words of a ticket's title and description (blind search index)."""

    __tablename__ = "ticket_search_tokens"
    __table_args__ = (
        # Keyword search newest first: one range per word, in list order (migration 0003).
        Index("ix_ticket_search_tokens_token_created", "token", "ticket_created_at", "ticket_id"),
    )

    ticket_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    # A copy of the ticket's created_at (which never changes): the list's default order.
    ticket_created_at: Mapped[datetime]


class TicketHistory(Base):
    """Who changed what, when, old → new (PHI fields record that they changed, not values)."""

    __tablename__ = "ticket_history"
    __table_args__ = (
        UniqueConstraint("ticket_id", "event_key", name="uq_ticket_history_event"),
        Index("ix_ticket_history_ticket_at", "ticket_id", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    # Idempotency: an activity retried with the same key writes nothing new.
    event_key: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(40))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IdempotencyRecord(Base):
    """An Idempotency-Key of a create request: same key → same ticket."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Counter(Base):
    """Named monotonic counters (ticket numbers)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)


class NotificationLog(Base):
    """Every notification sent (email, push), keyed so a retried activity sends once."""

    __tablename__ = "notification_log"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    ticket_id: Mapped[uuid.UUID | None]
    recipient_id: Mapped[uuid.UUID | None]
    kind: Mapped[str] = mapped_column(String(40))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
