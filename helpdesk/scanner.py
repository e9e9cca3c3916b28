"""An async client of clamd (ClamAV's daemon) over TCP or a unix socket.

Only the verdicts clamd states plainly are trusted: ``stream: OK`` is clean and
``stream: <signature> FOUND`` is infected. Anything else (an error line, a closed connection,
a timeout, a refused connection) raises `ScannerUnavailable`, and the caller keeps the file
quarantined: the scanner fails closed.

Protocol (clamd(8)): ``zINSTREAM\\0``, then chunks each prefixed by their length as a 4-byte
big-endian integer, then a zero-length chunk; clamd answers one NUL-terminated line.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

# clamd's default StreamMaxLength is 25 MiB; chunks well under its buffer are the norm.
CHUNK_BYTES = 64 * 1024
_MAX_REPLY = 4096


class ScannerUnavailable(Exception):
    """clamd did not give a verdict we trust (unreachable, timed out, error or odd answer).

    The message names the failure only; it never carries file content or names."""


class ScanLimitExceeded(ScannerUnavailable):
    """clamd refused the stream as longer than its StreamMaxLength. Retrying cannot help:
    the file stays quarantined until clamd's limit is raised to the upload limit."""


@dataclass(frozen=True, slots=True)
class ScanVerdict:
    """A trusted clamd verdict: clean, or infected with the named signature."""

    infected: bool
    signature: str | None = None

    @property
    def clean(self) -> bool:
        return not self.infected


def parse_reply(reply: bytes) -> ScanVerdict:
    """The verdict in one clamd INSTREAM reply line; anything unexpected is untrusted."""
    text = reply.rstrip(b"\0\r\n").decode("utf-8", errors="replace").strip()
    if text.endswith("size limit exceeded. ERROR"):
        raise ScanLimitExceeded("the file is longer than clamd's StreamMaxLength")
    # Session-mode replies carry an "<id>: " prefix; INSTREAM replies start with "stream:".
    if not text.startswith("stream:"):
        raise ScannerUnavailable("unexpected answer from clamd")
    body = text.removeprefix("stream:").strip()
    if body == "OK":
        return ScanVerdict(infected=False)
    if body.endswith(" FOUND"):
        signature = body.removesuffix(" FOUND").strip()
        if signature:
            return ScanVerdict(infected=True, signature=signature[:200])
    if body.endswith("ERROR"):
        raise ScannerUnavailable("clamd reported an error while scanning")
    raise ScannerUnavailable("unexpected answer from clamd")


class ClamdClient:
    """Talks to one clamd. `address` is ``host:port`` for TCP, or a unix socket path
    (starting with ``/`` or ``unix:``)."""

    def __init__(self, address: str, *, timeout: float = 60.0) -> None:
        self.address = address
        self.timeout = timeout
        self._unix_path: str | None = None
        self._host = ""
        self._port = 0
        if address.startswith("unix:"):
            self._unix_path = address.removeprefix("unix:")
        elif address.startswith("/"):
            self._unix_path = address
        else:
            host, sep, port = address.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError("clamd address must be host:port or a unix socket path")
            self._host = host.strip("[]") or "127.0.0.1"
            self._port = int(port)

    async def _command(self, command: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                sock = await self._open_socket()
                try:
                    await loop.sock_sendall(sock, b"z" + command + b"\0")
                    return await _read_reply(sock)
                finally:
                    sock.close()
        except TimeoutError as exc:
            raise ScannerUnavailable("clamd timed out") from exc
        except OSError as exc:
            raise ScannerUnavailable("clamd is unreachable") from exc

    async def ping(self) -> bool:
        """True when clamd answers PONG; raises `ScannerUnavailable` otherwise."""
        reply = await self._command(b"PING")
        if reply.rstrip(b"\0\r\n") != b"PONG":
            raise ScannerUnavailable("unexpected answer from clamd")
        return True

    async def version(self) -> str:
        """clamd's version line (engine and signature versions)."""
        reply = await self._command(b"VERSION")
        return reply.rstrip(b"\0\r\n").decode("utf-8", errors="replace")

    async def _open_socket(self) -> socket.socket:
        """A connected non-blocking socket, read and written with the loop's sock_* calls
        rather than through a transport: a transport that fails a write closes itself and
        drops whatever the peer sent before resetting, while the socket still hands over
        the bytes the kernel has already received."""
        loop = asyncio.get_running_loop()
        targets: list[tuple[int, int, int, Any]]
        if self._unix_path is not None:
            targets = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, self._unix_path)]
        else:
            infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
            targets = [(family, kind, proto, addr) for family, kind, proto, _, addr in infos]
        error: OSError = OSError("clamd address resolved to nothing")
        for family, kind, proto, target in targets:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, target)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise error

    async def scan_stream(self, chunks: AsyncIterable[bytes]) -> ScanVerdict:
        """Stream the bytes to clamd with INSTREAM and return its verdict.

        The timeout covers the whole exchange. clamd may answer before the stream ends (its
        StreamMaxLength was reached) and reset the connection, so a later write fails: the
        answer is read from the socket by a reader waiting from the start, and a failed
        write only stops the sending. The answer already received is then judged like any
        other; with none, the failure is "unreachable"."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                sock = await self._open_socket()
                answer = asyncio.ensure_future(_read_reply(sock))
                try:
                    try:
                        await loop.sock_sendall(sock, b"zINSTREAM\0")
                        async for chunk in chunks:
                            for start in range(0, len(chunk), CHUNK_BYTES):
                                if answer.done():  # clamd answered early: stop sending
                                    break
                                piece = chunk[start : start + CHUNK_BYTES]
                                await loop.sock_sendall(sock, struct.pack(">I", len(piece)) + piece)
                            if answer.done():
                                break
                        if not answer.done():
                            await loop.sock_sendall(sock, struct.pack(">I", 0))
                    except (ConnectionResetError, BrokenPipeError):
                        # clamd stopped reading: it may have said why before closing.
                        pass
                    reply = await answer
                finally:
                    if not answer.done():
                        answer.cancel()
                        with contextlib.suppress(asyncio.CancelledError, OSError):
                            await answer
                    sock.close()
        except TimeoutError as exc:
            raise ScannerUnavailable("clamd timed out") from exc
        except OSError as exc:
            raise ScannerUnavailable("clamd is unreachable") from exc
        return parse_reply(reply)


async def _read_reply(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while b"\0" not in data:
        piece = await loop.sock_recv(sock, _MAX_REPLY)
        if not piece:
            break
        data += piece
        if len(data) > _MAX_REPLY:
            raise ScannerUnavailable("clamd answer too long")
    if not data:
        raise ScannerUnavailable("clamd closed the connection without an answer")
    return bytes(data.split(b"\0", 1)[0])


# Last reachability check per clamd address: (monotonic time, answered).
_REACHABILITY: dict[str, tuple[float, bool]] = {}
REACHABILITY_TTL_SECONDS = 10.0


async def reachable(address: str) -> bool:
    """Whether clamd at `address` answered PING lately (checked at most every
    `REACHABILITY_TTL_SECONDS`): what an attachment waiting for its scan shows its viewers
    ("scanner unavailable") while the scan activity keeps retrying."""
    now = time.monotonic()
    seen = _REACHABILITY.get(address)
    if seen is not None and now - seen[0] < REACHABILITY_TTL_SECONDS:
        return seen[1]
    try:
        answered = await ClamdClient(address, timeout=1.0).ping()
    except (ScannerUnavailable, ValueError):
        answered = False
    _REACHABILITY[address] = (time.monotonic(), answered)
    return answered
