"""Response bodies of the attachment routes (uploads are multipart, read as a stream)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScanState = Literal["PENDING", "CLEAN", "INFECTED"]


class AttachmentOut(BaseModel):
    """An attachment as its viewers see it. Downloadable only when `scan_status` is CLEAN."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ticket_id: uuid.UUID
    filename: str = Field(description="Sanitised file name")
    mime_type: str = Field(description="Type decided from the content, not the client")
    size: int = Field(description="Bytes")
    sha256: str = Field(description="SHA-256 of the content, hex")
    scan_status: ScanState = Field(
        description="PENDING: quarantined until the virus scan; CLEAN: downloadable; "
        "INFECTED: destroyed"
    )
    is_internal: bool = Field(description="Staff-only attachment")
    uploader_id: uuid.UUID
    created_at: datetime
    scanned_at: datetime | None = None
    scan_detail: str | None = Field(
        None,
        description="Why a PENDING file still waits: `scanner unavailable` while no virus "
        "scanner answers (the scan is retried; the file stays quarantined)",
    )


class AttachmentList(BaseModel):
    items: list[AttachmentOut]


# OpenAPI description of the multipart body, which the route reads as a stream itself.
UPLOAD_OPENAPI: dict[str, object] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The file (one per request)",
                        }
                    },
                }
            }
        },
    }
}
