"""PostgreSQL: `pg_dump -Fc` of an exported snapshot, and `pg_restore` in one transaction.

The backup opens a REPEATABLE READ transaction, exports its snapshot and reads the
attachment list and counts in it; `pg_dump --snapshot` then dumps exactly that state, so
the attachments copied are the ones the dump references. Connection details reach the
client tools through libpq's environment variables (the password never on a command line).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from helpdesk.backup.errors import BackupError
from helpdesk.backup.sqlite_source import Snapshot

PIPE_BYTES = 1024 * 1024


def libpq_env(url: str) -> dict[str, str]:
    """PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for a SQLAlchemy PostgreSQL URL."""
    parsed = make_url(url)
    env = {"PGHOST": parsed.host or "127.0.0.1", "PGPORT": str(parsed.port or 5432)}
    if parsed.username:
        env["PGUSER"] = parsed.username
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    if parsed.database:
        env["PGDATABASE"] = parsed.database
    sslmode = parsed.query.get("ssl") or parsed.query.get("sslmode")
    if isinstance(sslmode, str):
        env["PGSSLMODE"] = "require" if sslmode in ("true", "require") else sslmode
    return env


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return path


async def tool_major(name: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        tool(name), "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    match = re.search(r"(\d+)(?:\.\d+)?", out.decode())
    if match is None:
        raise BackupError(f"cannot tell the version of {name}")
    return int(match.group(1))


async def check_versions(connection: Any, name: str) -> tuple[int, int]:
    """(client major, server major); refuses a client older than the server."""
    server = int(await connection.fetchval("SHOW server_version_num")) // 10000
    client = await tool_major(name)
    if client < server:
        raise BackupError(
            f"{name} {client} cannot handle PostgreSQL {server}: install "
            f"postgresql-client-{server} (its {name} must be at least the server's version)"
        )
    return client, server


async def _facts(connection: Any) -> tuple[str | None, dict[str, int], list[str], int]:
    revision = await connection.fetchval("SELECT version_num FROM alembic_version")
    counts = {
        name: int(await connection.fetchval(f"SELECT count(*) FROM {name}"))  # noqa: S608
        for name in ("tickets", "comments", "attachments", "audit_log", "data_keys", "users")
    }
    rows = await connection.fetch(
        "SELECT storage_key, size FROM attachments WHERE storage_key IS NOT NULL "
        "ORDER BY storage_key"
    )
    return revision, counts, [row[0] for row in rows], sum(int(row[1] or 0) for row in rows)


async def dump(url: str, sink: Callable[[bytes], None]) -> Snapshot:
    """Stream `pg_dump -Fc` of one snapshot into `sink`; the facts of that same snapshot."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        client, server = await check_versions(connection, "pg_dump")
        transaction = connection.transaction(isolation="repeatable_read", readonly=True)
        await transaction.start()
        try:
            snapshot_id = await connection.fetchval("SELECT pg_export_snapshot()")
            revision, counts, keys, attachment_bytes = await _facts(connection)
            proc = await asyncio.create_subprocess_exec(
                tool("pg_dump"),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={snapshot_id}",
                env={**os.environ, **libpq_env(url)},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            assert proc.stdout is not None and proc.stderr is not None
            errors = asyncio.ensure_future(proc.stderr.read())
            try:
                while chunk := await proc.stdout.read(PIPE_BYTES):
                    sink(chunk)
            except BaseException:
                proc.kill()  # the sink failed (disk full, interrupted): no orphan pg_dump
                await proc.wait()
                raise
            code = await proc.wait()
            if code != 0:
                message = (await errors).decode(errors="replace").strip()[-500:]
                raise BackupError(f"pg_dump failed ({code}): {message}")
        finally:
            await transaction.rollback()
        server_version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return Snapshot(
        engine="postgresql",
        engine_version=str(server_version),
        schema_revision=revision,
        counts=counts,
        attachment_keys=keys,
        attachment_bytes=attachment_bytes,
        details={"pg_dump_major": client, "server_major": server},
    )


async def refuse_unless_empty(url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await check_versions(connection, "pg_restore")
        tables = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
            "'information_schema')"
        )
    finally:
        await connection.close()
    if tables:
        raise BackupError(f"refusing to restore: the target database has {tables} tables")


async def restore(url: str, chunks: Iterator[bytes] | AsyncIterator[bytes]) -> None:
    """Feed the authenticated dump to `pg_restore --single-transaction`: if `chunks` raises
    (a segment fails authentication, a SHA-256 differs), pg_restore is killed before it has
    read the whole archive, so its transaction never commits."""
    proc = await asyncio.create_subprocess_exec(
        tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={libpq_env(url).get('PGDATABASE', '')}",
        env={**os.environ, **libpq_env(url)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    errors = asyncio.ensure_future(proc.stderr.read())
    try:
        if isinstance(chunks, Iterator):
            for chunk in chunks:
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        else:
            async for chunk in chunks:
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        proc.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # pg_restore stopped reading: its exit status and message say why
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    code = await proc.wait()
    if code != 0:
        message = (await errors).decode(errors="replace").strip()[-500:]
        raise BackupError(f"pg_restore failed ({code}): {message}")
