"""The virus scanner of `helpdesk dev`: a clamd child process on the configured loopback
address, when clamd is installed (scripts/install-clamav.sh, the script `make test` runs).

It loads the system's signature database when freshclam has filled one
(/var/lib/clamav/*.cvd or *.cld), and otherwise the EICAR test signatures shipped in
helpdesk/data/clamav: enough to see the whole upload -> scan -> release/block path work, not
a real defence (the README says so). Without clamd, `helpdesk dev` says so once; uploads then
stay quarantined with `scan_detail: "scanner unavailable"` and the scan is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from helpdesk import scanner
from helpdesk.scanner import ClamdClient, ScannerUnavailable
from helpdesk.settings import Settings

SHIPPED_SIGNATURES = Path(__file__).parent / "data" / "clamav"
SYSTEM_SIGNATURES = Path("/var/lib/clamav")
READY_TIMEOUT = 120.0  # a full signature database takes a while to load
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def clamd_binary() -> str | None:
    return shutil.which("clamd") or next(
        (p for p in ("/usr/sbin/clamd", "/usr/local/sbin/clamd") if os.access(p, os.X_OK)), None
    )


def loopback_tcp(address: str) -> tuple[str, int] | None:
    """(host, port) when `address` is TCP on loopback: the only kind dev starts itself."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or host not in LOOPBACK:
        return None
    return host, int(port)


def system_signatures() -> bool:
    return SYSTEM_SIGNATURES.is_dir() and any(
        p.suffix in (".cvd", ".cld") for p in SYSTEM_SIGNATURES.iterdir()
    )


class DevClamd:
    """One clamd child, configured under var/clamd, in a process group of its own."""

    def __init__(self, settings: Settings, binary: str, host: str, port: int) -> None:
        self.settings = settings
        self.binary = binary
        self.workdir = settings.var_dir / "clamd"
        self.log_path = self.workdir / "clamd.log"
        self.host, self.port = host, port
        self.real_signatures = system_signatures()
        self.process: subprocess.Popen[bytes] | None = None

    def _configure(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.real_signatures:
            database = SYSTEM_SIGNATURES
        else:
            database = self.workdir / "signatures"
            database.mkdir(exist_ok=True)
            for item in SHIPPED_SIGNATURES.iterdir():
                shutil.copy(item, database / item.name)
        stream_max = max(self.settings.max_upload_bytes, 1 << 20)
        config = self.workdir / "clamd.conf"
        config.write_text(
            "\n".join(
                [
                    "Foreground yes",
                    f"LogFile {self.log_path}",
                    f"TCPSocket {self.port}",
                    f"TCPAddr {self.host}",
                    f"DatabaseDirectory {database}",
                    f"StreamMaxLength {stream_max}",
                    "SelfCheck 0",
                    "",
                ]
            )
        )
        return config

    def start(self) -> None:
        config = self._configure()
        command = [self.binary, "-c", str(config)]
        # Threads run in the parent by now, so no preexec_fn: util-linux's setpriv asks the
        # kernel to SIGTERM clamd when `helpdesk dev` dies, even by SIGKILL.
        setpriv = shutil.which("setpriv")
        if setpriv is not None and sys.platform.startswith("linux"):
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def wait_ready(self, within: float = READY_TIMEOUT) -> bool:
        """True once clamd answers PING; False if it exited or never answered."""
        client = ClamdClient(f"{self.host}:{self.port}", timeout=2.0)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            with contextlib.suppress(ScannerUnavailable):
                if await client.ping():
                    return True
            await asyncio.sleep(0.2)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def start_for_dev(
    settings: Settings, say: Callable[[str], None]
) -> tuple[DevClamd | None, str]:
    """Start clamd for `helpdesk dev` where it makes sense; returns the child (or None) and
    one line for the banner. Never fails the start: without a scanner, uploads wait."""
    endpoint = loopback_tcp(settings.clamd_address)
    if await scanner.reachable(settings.clamd_address):
        return None, f"{settings.clamd_address} (already running)"
    if not settings.dev_clamd or endpoint is None:
        return None, f"{settings.clamd_address} (not started by dev)"
    binary = clamd_binary()
    if binary is None:
        say(
            "clamd is not installed: uploads stay quarantined ('scanner unavailable') until "
            "a scanner answers. scripts/install-clamav.sh installs it."
        )
        return None, "none (clamd is not installed)"
    clamd = DevClamd(settings, binary, *endpoint)
    kind = "system signatures" if clamd.real_signatures else "EICAR test signatures only"
    say(f"Starting clamd ({kind}) ...")
    clamd.start()
    if not await clamd.wait_ready():
        clamd.stop()
        say(f"clamd did not start; see {clamd.log_path}. Uploads stay quarantined.")
        return None, f"none (clamd failed, {clamd.log_path})"
    return clamd, f"{settings.clamd_address} (clamd, {kind})"
