"""Routes: attachments. Upload (multipart, read as a stream and counted as it arrives),
download (only once the virus scan said CLEAN), delete, and a ticket's list.

Starlette does not cap multipart file parts, so the upload does not use its form parser:
it drives python-multipart's incremental parser over `request.stream()` itself, refusing
with 413 as soon as the body or the file passes the limit, and nothing stays stored.
No request-wide database transaction is held while bytes move (see the service).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from api.deps import AnyUser, RuntimeDep
from api.schemas.attachments import UPLOAD_OPENAPI, AttachmentList, AttachmentOut
from helpdesk import scanner
from helpdesk.errors import PayloadTooLarge, ValidationFailed
from helpdesk.runtime import Runtime
from helpdesk.services import (
    attachment_access,
    attachment_download,
    attachment_scan,
    attachment_upload,
    attachments,
)
from helpdesk.sniff import TEXT, ascii_fallback

router = APIRouter()

# Room for the multipart framing and small fields around the file part.
MULTIPART_OVERHEAD = 64 * 1024
FILE_FIELD = "file"


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        "the upload is larger than allowed",
        details={"max_bytes": limit},
        audit={
            "action": "attachment.upload",
            "outcome": "denied",
            "table": "attachments",
            "details": {"why": "size", "max_bytes": limit},
        },
    )


class MultipartFileStream:
    """The bytes of the one file part named ``file`` of a multipart request, as a stream.

    Its `filename` is the part's (unsanitised) file name once its headers were read."""

    def __init__(self, request: Request, file_limit: int) -> None:
        content_type, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise ValidationFailed(
                "send the file as multipart/form-data with a part named 'file'",
                details={"field": "content-type"},
            )
        self._request = request
        self._body_limit = file_limit + MULTIPART_OVERHEAD
        self._file_limit = file_limit
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._body_limit:
            raise _too_large(file_limit)
        self.filename: str | None = None
        self._pending: list[bytes] = []
        self._headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self._in_file = False
        self._files_seen = 0
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    # python-multipart callbacks (synchronous, called from `write`)
    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1")
        self._field, self._value = b"", b""

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        name = params.get(b"name", b"").decode("latin-1")
        self._in_file = name == FILE_FIELD
        if self._in_file:
            self._files_seen += 1
            if self._files_seen > 1:
                raise ValidationFailed("send one file per request", details={"field": FILE_FIELD})
            raw = params.get(b"filename")
            # Browsers send UTF-8 names; the header was read as latin-1 bytes.
            self.filename = raw.decode("utf-8", errors="replace") if raw is not None else None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(data[start:end])

    def _on_part_end(self) -> None:
        self._in_file = False

    def _on_end(self) -> None:
        self._ended = True

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for chunk in self._request.stream():
                received += len(chunk)
                if received > self._body_limit:
                    raise _too_large(self._file_limit)
                data = self._feed(chunk)
                if data:
                    yield data
        except ClientDisconnect as exc:
            # The caller is gone; nothing is kept (the store drops its temporary file).
            raise ValidationFailed("the upload was interrupted") from exc
        self._finish()

    def _feed(self, chunk: bytes) -> bytes:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise ValidationFailed(
                "the multipart body is malformed", details={"field": "body"}
            ) from exc
        data = b"".join(self._pending)
        self._pending.clear()
        return data

    def _finish(self) -> None:
        self._parser.finalize()
        if self._files_seen == 0:
            raise ValidationFailed(
                "a multipart part named 'file' is required", details={"field": FILE_FIELD}
            )
        if not self._ended:
            raise ValidationFailed("the multipart body ended early", details={"field": "body"})


SCANNER_UNAVAILABLE = "scanner unavailable"


def _out(info: attachment_access.AttachmentInfo, scanner_down: bool = False) -> AttachmentOut:
    out = AttachmentOut.model_validate(info)
    if scanner_down and out.scan_status == "PENDING":
        out.scan_detail = SCANNER_UNAVAILABLE
    return out


async def _scanner_down(runtime: Runtime, items: list[attachment_access.AttachmentInfo]) -> bool:
    """True when a file of `items` waits for a scan and clamd does not answer."""
    if not any(item.scan_status == "PENDING" for item in items):
        return False
    return not await scanner.reachable(runtime.settings.clamd_address)


@router.post(
    "/tickets/{ticket_id}/attachments",
    response_model=AttachmentOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_OPENAPI,
    responses={413: {"description": "Larger than the upload limit"}},
)
async def upload_attachment(
    ticket_id: uuid.UUID,
    request: Request,
    response: Response,
    principal: AnyUser,
    runtime: RuntimeDep,
    is_internal: Annotated[
        bool, Query(description="Staff only: an internal attachment end users never see")
    ] = False,
) -> AttachmentOut:
    """Attach a file to a ticket. It stays quarantined (PENDING) until the virus scan."""
    target = await attachment_upload.prepare_upload(
        runtime, principal, ticket_id, is_internal=is_internal
    )
    upload = MultipartFileStream(request, runtime.settings.max_upload_bytes)
    info = await attachment_upload.store_upload(runtime, target, upload)
    await attachment_scan.request_scan(runtime, info.ticket_id, info.id)
    response.headers["Location"] = f"/api/v1/attachments/{info.id}"
    return _out(info, await _scanner_down(runtime, [info]))


@router.get("/tickets/{ticket_id}/attachments", response_model=AttachmentList)
async def list_ticket_attachments(
    ticket_id: uuid.UUID, principal: AnyUser, runtime: RuntimeDep
) -> AttachmentList:
    """The ticket's attachments the caller may see, with their scan state."""
    items = await attachments.list_attachments(runtime, principal, ticket_id)
    down = await _scanner_down(runtime, items)
    return AttachmentList(items=[_out(item, down) for item in items])


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the UTF-8 name (RFC 6266 / 5987)."""
    return (
        f'attachment; filename="{ascii_fallback(filename)}"; '
        f"filename*=UTF-8''{quote(filename, safe='')}"
    )


@router.get(
    "/attachments/{attachment_id}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        409: {"description": "Quarantined: the virus scan has not said CLEAN yet"},
        410: {"description": "Infected (destroyed) or deleted"},
    },
)
async def download_attachment(
    attachment_id: uuid.UUID, principal: AnyUser, runtime: RuntimeDep
) -> StreamingResponse:
    """The file's bytes, decrypted and authenticated, once the scan said CLEAN."""
    download = await attachment_download.open_download(runtime, principal, attachment_id)
    info = download.info
    media_type = f"{TEXT}; charset=utf-8" if info.mime_type == TEXT else info.mime_type
    return StreamingResponse(
        download.chunks,
        media_type=media_type,
        headers={
            "Content-Disposition": content_disposition(info.filename),
            "Content-Length": str(info.size),
            # Never rendered in our origin: a hostile file cannot run script here.
            "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.delete("/attachments/{attachment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_attachment(
    attachment_id: uuid.UUID, principal: AnyUser, runtime: RuntimeDep
) -> Response:
    """Delete an attachment and its bytes (its uploader, or staff)."""
    await attachments.delete_attachment(runtime, principal, attachment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
