"""Attachments: encrypted bytes in a store, quarantined until the scanner says clean."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamps, new_id
from models.enums import ScanStatus, check_in


class Attachment(Timestamps, Base):
    __tablename__ = "attachments"
    __table_args__ = (CheckConstraint(check_in("scan_status", ScanStatus), name="scan_status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    comment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("comments.id"))
    uploader_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    filename_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    mime_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str | None] = mapped_column(String(255))
    scan_status: Mapped[str] = mapped_column(String(10), default=ScanStatus.PENDING.value)
    is_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    scanned_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
