"""A real clamd for the tests, with the EICAR signature database the repository ships.

`helpdesk/data/clamav/` holds two signatures made with sigtool (the full signature feed cannot
be downloaded here):

- ``eicar.hsb``: ``sigtool --sha256 eicar.com`` — the SHA-256 of the 68-byte EICAR file;
- ``eicar.ndb``: a body signature, ``Name:0:*:<hex>`` with the hex of
  ``printf '%s' "$EICAR" | sigtool --hex-dump``, so EICAR is found anywhere in a stream.

Each clamd gets a generated clamd.conf (Foreground, TCP on 127.0.0.1 at a free port, a unix
socket in a short temporary directory, DatabaseDirectory = a copy of helpdesk/data/clamav, no
freshclam), is ready when PING answers PONG, and is stopped by the fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "helpdesk" / "data" / "clamav"
# The 68-byte EICAR anti-virus test file (harmless by design; every scanner flags it).
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURES = ("Helpdesk.Test.EICAR-Body.UNOFFICIAL", "Helpdesk.Test.EICAR-File.UNOFFICIAL")


def clamd_binary() -> str:
    """Path of clamd, or fail with the way to get it."""
    found = shutil.which("clamd") or next(
        (p for p in ("/usr/sbin/clamd", "/usr/local/sbin/clamd") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.fail(
            "clamd is not installed: run `make test` (it runs scripts/install-clamav.sh), "
            "or `sudo scripts/install-clamav.sh`"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(address: tuple[str, int] | str, timeout: float = 1.0) -> bool:
    """True when a clamd at (host, port) or a unix socket path answers PONG."""
    try:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(address)
        else:
            sock = socket.create_connection(address, timeout=timeout)
        with sock:
            sock.sendall(b"zPING\0")
            return sock.recv(16).startswith(b"PONG")
    except OSError:
        return False


class ClamdProcess:
    """One clamd on loopback. `stop()` and `start()` again keep the same port and socket,
    so a client configured with its address sees it go away and come back."""

    def __init__(self, *, stream_max_length: str = "64M") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="clamd-"))
        self.port = _free_port()
        self.socket_path = str(self.workdir / "clamd.sock")
        self.log_path = self.workdir / "clamd.log"
        database = self.workdir / "db"
        database.mkdir()
        for item in DATA.iterdir():
            if item.suffix in (".hsb", ".ndb", ".hdb"):
                shutil.copy(item, database / item.name)
        self.config = self.workdir / "clamd.conf"
        self.config.write_text(
            "\n".join(
                [
                    "Foreground yes",
                    f"LogFile {self.log_path}",
                    f"LocalSocket {self.socket_path}",
                    f"TCPSocket {self.port}",
                    "TCPAddr 127.0.0.1",
                    f"DatabaseDirectory {database}",
                    f"StreamMaxLength {stream_max_length}",
                    "SelfCheck 0",
                    "",
                ]
            )
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def tcp_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 90.0) -> ClamdProcess:
        """Start clamd and wait until it answers PING over TCP."""
        binary = clamd_binary()
        self._process = subprocess.Popen(
            [binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise RuntimeError(f"clamd exited at start-up:\n{log[-2000:]}")
            if ping(("127.0.0.1", self.port)):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("clamd did not answer PING in time")

    def stop(self) -> None:
        """Stop clamd (SIGTERM, then SIGKILL) and wait until its port is closed."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        Path(self.socket_path).unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def clamd() -> Iterator[ClamdProcess]:
    """A clamd shared by the session's tests (those that leave it running)."""
    process = ClamdProcess().start()
    try:
        yield process
    finally:
        process.cleanup()


@pytest.fixture
def clamd_factory() -> Iterator[type[ClamdProcess]]:
    """Make clamd processes private to one test (to stop or reconfigure); all cleaned up."""
    made: list[ClamdProcess] = []

    class _Tracked(ClamdProcess):
        def __init__(self, **kwargs: str) -> None:
            super().__init__(**kwargs)
            made.append(self)

    try:
        yield _Tracked
    finally:
        for process in made:
            process.cleanup()
