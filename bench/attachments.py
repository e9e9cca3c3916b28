"""Attachment benchmark: upload and download throughput of a 20 MB file through the API.

    python -m bench.attachments [--megabytes 20] [--rounds 3]

Starts the real API under uvicorn on a free loopback port, on a temporary migrated SQLite
database and the local encrypted attachment store, with one signed-in end user and one
ticket. Each round uploads the file over HTTP (multipart, parsed as a stream, sniffed,
counted, AES-256-GCM sealed in 64 KiB segments, fsynced and renamed), marks it CLEAN the
way the scan activity does (the virus scan is not what is measured here), then downloads
it (authenticated whole before the first byte, then streamed) and checks its SHA-256.
Throughput is MB/s (10^6 bytes) of the median round. The last line printed is one JSON
object: ``{"attachment_upload_mb_s": ..., "attachment_download_mb_s": ..., ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

MB = 1_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _serve(app: Any) -> AsyncIterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _no_scan(runtime: Any, ticket_id: uuid.UUID, attachment_id: uuid.UUID) -> None:
    """The scan seam, switched off: the bench marks files CLEAN itself."""


async def measure_attachment_throughput(megabytes: int = 20, rounds: int = 3) -> dict[str, Any]:
    """Median upload and download MB/s of a `megabytes` file through a real API process."""
    from api.app import create_app, prepare_runtime
    from helpdesk.migrate import upgrade_async
    from helpdesk.runtime import build_runtime
    from helpdesk.services import attachment_store, sessions, users
    from helpdesk.settings import Settings
    from models.attachment import Attachment
    from models.enums import Role
    from models.ticket import Ticket

    size = megabytes * MB
    # A PDF header, then incompressible bytes: the content sniffer accepts it as a PDF.
    payload = b"%PDF-1.7\n" + os.urandom(size - 9)
    digest = hashlib.sha256(payload).hexdigest()
    with tempfile.TemporaryDirectory(prefix="bench-attachments-") as tmp:
        var_dir = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{var_dir / 'helpdesk.db'}"
        await upgrade_async(database_url)
        settings = Settings(
            environment="test",
            var_dir=var_dir,
            database_url=database_url,
            email_backend="file",
            argon2_time_cost=1,
            argon2_memory_cost=8192,
            run_worker_in_api=False,
            max_upload_bytes=max(size, 25 * 1024 * 1024),
        )
        runtime = prepare_runtime(build_runtime(settings))
        runtime.scan_starter = _no_scan
        async with runtime.database.transaction() as session:
            user = await users.create_user(
                session,
                runtime,
                email="patient@bench.example",
                password=uuid.uuid4().hex,
                role=Role.END_USER,
                email_verified_at=datetime.now(UTC),  # the API refuses unverified accounts
            )
            issued = await sessions.start(
                session, runtime, user, mfa=False, ip="127.0.0.1", user_agent="bench"
            )
            key = await runtime.keys.create(session)
            ticket = Ticket(id=uuid.uuid4(), number=1, data_key_id=key.key_id, requester_id=user.id)
            session.add(ticket)
        headers = {"Authorization": f"Bearer {issued.access_token}"}
        app = create_app(runtime=runtime, temporal_client=object(), run_worker=False)
        uploads: list[float] = []
        downloads: list[float] = []
        try:
            async with (
                _serve(app) as url,
                httpx.AsyncClient(base_url=url, timeout=120) as http,
            ):
                for _ in range(rounds):
                    started = time.perf_counter()
                    response = await http.post(
                        f"/api/v1/tickets/{ticket.id}/attachments",
                        files={"file": ("scan.pdf", payload, "application/pdf")},
                        headers=headers,
                    )
                    uploads.append(time.perf_counter() - started)
                    response.raise_for_status()
                    attachment_id = uuid.UUID(response.json()["id"])
                    async with runtime.database.transaction() as session:
                        row = await session.get(Attachment, attachment_id)
                        assert row is not None
                        row.scan_status = "CLEAN"
                    check = hashlib.sha256()
                    started = time.perf_counter()
                    async with http.stream(
                        "GET", f"/api/v1/attachments/{attachment_id}", headers=headers
                    ) as download:
                        download.raise_for_status()
                        async for chunk in download.aiter_raw():
                            check.update(chunk)
                    downloads.append(time.perf_counter() - started)
                    if check.hexdigest() != digest:
                        raise RuntimeError("downloaded bytes differ from the upload")
        finally:
            await attachment_store.close(runtime)
            await runtime.close()
    return {
        "attachment_upload_mb_s": round(size / MB / statistics.median(uploads), 1),
        "attachment_download_mb_s": round(size / MB / statistics.median(downloads), 1),
        "attachment_size_mb": megabytes,
        "attachment_rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures = asyncio.run(measure_attachment_throughput(args.megabytes, args.rounds))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
