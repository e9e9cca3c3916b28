"""Customer-satisfaction surveys: one per resolution of a ticket (migration 0007)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, new_id, utcnow


class SatisfactionSurvey(Base):
    """A survey sent to the requester when their ticket is resolved. The link token is
    stored only as its SHA-256; the optional comment is PHI, sealed under the ticket's data
    key. A reopen cancels it while unanswered."""

    __tablename__ = "satisfaction_surveys"
    __table_args__ = (
        CheckConstraint("rating IS NULL OR (rating >= 1 AND rating <= 5)", name="rating"),
        Index("ix_satisfaction_surveys_ticket", "ticket_id", "resolution", unique=True),
        Index("ix_satisfaction_surveys_due", "sent_at", "send_after"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    resolution: Mapped[int] = mapped_column(Integer)  # 1 for the first resolution, ...
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    send_after: Mapped[datetime]
    expires_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    answered_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    rating: Mapped[int | None] = mapped_column(Integer)
    comment_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
