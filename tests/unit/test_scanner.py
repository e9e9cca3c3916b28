"""The clamd client against a real clamd (EICAR signatures from helpdesk/data/clamav), and
against hostile or absent peers: anything but a plain verdict fails closed."""

# The clamd fixtures are imported by name, so test arguments shadow them (F811).
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
from collections.abc import AsyncIterator

import pytest

from helpdesk.scanner import ClamdClient, ScanLimitExceeded, ScannerUnavailable, parse_reply
from tests.support.clamd import EICAR, EICAR_SIGNATURES, ClamdProcess, clamd, clamd_factory  # noqa: F401


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_ping_and_version_over_tcp_and_unix_socket(clamd: ClamdProcess) -> None:
    for address in (clamd.tcp_address, clamd.socket_path, f"unix:{clamd.socket_path}"):
        client = ClamdClient(address, timeout=10)
        assert await client.ping() is True
        assert (await client.version()).startswith("ClamAV ")


async def test_eicar_is_infected_with_its_signature(clamd: ClamdProcess) -> None:
    verdict = await ClamdClient(clamd.tcp_address).scan_stream(_chunks(EICAR))
    assert verdict.infected and not verdict.clean
    assert verdict.signature in EICAR_SIGNATURES


async def test_eicar_inside_a_larger_stream_over_the_unix_socket(clamd: ClamdProcess) -> None:
    padding = b"ordinary text line\n" * 60_000  # ~1.1 MB, many INSTREAM chunks
    verdict = await ClamdClient(clamd.socket_path).scan_stream(
        _chunks(padding, EICAR, b"\n", padding)
    )
    assert verdict.infected
    assert verdict.signature == "Helpdesk.Test.EICAR-Body.UNOFFICIAL"


async def test_clean_bytes_are_clean(clamd: ClamdProcess) -> None:
    verdict = await ClamdClient(clamd.tcp_address).scan_stream(
        _chunks(b"%PDF-1.4\n", os.urandom(3 * 1024 * 1024))
    )
    assert verdict.clean and verdict.signature is None


async def test_empty_stream_is_clean(clamd: ClamdProcess) -> None:
    assert (await ClamdClient(clamd.tcp_address).scan_stream(_chunks())).clean


async def test_stream_over_clamd_limit_fails_closed(clamd_factory: type[ClamdProcess]) -> None:
    small = clamd_factory(stream_max_length="1M").start()
    with pytest.raises(ScanLimitExceeded):
        await ClamdClient(small.tcp_address, timeout=20).scan_stream(
            _chunks(os.urandom(2 * 1024 * 1024))
        )


async def test_unreachable_clamd_fails_closed(clamd_factory: type[ClamdProcess]) -> None:
    gone = clamd_factory()  # never started: its port and socket answer nothing
    for address in (gone.tcp_address, gone.socket_path):
        client = ClamdClient(address, timeout=5)
        with pytest.raises(ScannerUnavailable, match="unreachable"):
            await client.scan_stream(_chunks(b"hello"))
        with pytest.raises(ScannerUnavailable):
            await client.ping()


async def _fake_clamd(reply: bytes | None) -> tuple[asyncio.Server, str]:
    """A peer that reads the request and answers `reply` (None: never answers)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(65536)
            if reply is None:
                await asyncio.sleep(30)
            else:
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    "reply",
    [
        b"stream: Something odd\0",
        b"stream: OK but not really",  # no terminator, then the connection closes
        b"",  # closes without a word
        b"PONG\0",
    ],
)
async def test_unknown_answers_fail_closed(reply: bytes) -> None:
    server, address = await _fake_clamd(reply)
    try:
        with pytest.raises(ScannerUnavailable):
            await ClamdClient(address, timeout=5).scan_stream(_chunks(b"hello"))
    finally:
        server.close()
        await server.wait_closed()


async def test_silent_clamd_times_out_and_fails_closed() -> None:
    server, address = await _fake_clamd(None)
    try:
        with pytest.raises(ScannerUnavailable, match="timed out"):
            await ClamdClient(address, timeout=0.5).scan_stream(_chunks(b"hello"))
    finally:
        server.close()
        await server.wait_closed()


def test_parse_reply() -> None:
    assert parse_reply(b"stream: OK\0").clean
    found = parse_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\0")
    assert found.infected and found.signature == "Win.Test.EICAR_HDB-1"
    with pytest.raises(ScanLimitExceeded):
        parse_reply(b"INSTREAM size limit exceeded. ERROR\0")
    for bad in (b"stream:  FOUND", b"stream: ERROR", b"OK", b"1: stream: OK", b""):
        with pytest.raises(ScannerUnavailable):
            parse_reply(bad)


def test_address_forms() -> None:
    with pytest.raises(ValueError):
        ClamdClient("localhost")
    with pytest.raises(ValueError):
        ClamdClient("localhost:http")


def _answer_then_reset(reply: bytes, *, accepts: int) -> tuple[socket.socket, threading.Thread]:
    """A blocking peer on its own thread, as clamd at its StreamMaxLength: it reads a few
    bytes of each request, answers `reply`, and closes with unread data pending, which the
    kernel turns into a reset. The client's next write then fails while the answer is
    already waiting in its receive buffer."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for _ in range(accepts):
            conn, _addr = listener.accept()
            with conn:
                conn.recv(16)
                conn.sendall(reply)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_an_answer_before_a_reset_is_never_lost(loop_kind: str) -> None:
    """Failed a clean-clone CI run: clamd answered "size limit exceeded" and reset the
    connection; the client's next write failed before its loop had read the answer, and the
    answer was reported as "clamd is unreachable" (a retryable outage, not the limit)."""
    rounds = 20
    listener, thread = _answer_then_reset(b"INSTREAM size limit exceeded. ERROR\0", accepts=rounds)
    address = f"127.0.0.1:{listener.getsockname()[1]}"

    async def scan_all() -> list[str]:
        outcomes = []
        for _ in range(rounds):
            try:
                await ClamdClient(address, timeout=10).scan_stream(
                    _chunks(*[os.urandom(256 * 1024)] * 16)
                )
                outcomes.append("verdict")
            except ScanLimitExceeded:
                outcomes.append("limit")
            except ScannerUnavailable as exc:
                outcomes.append(str(exc))
        return outcomes

    try:
        if loop_kind == "uvloop":
            import uvloop

            outcomes = uvloop.run(scan_all())
        else:
            outcomes = asyncio.run(scan_all())
    finally:
        listener.close()
        thread.join(timeout=10)
    assert outcomes == ["limit"] * rounds
