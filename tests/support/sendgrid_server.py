"""A loopback HTTP server that speaks SendGrid's v3 ``POST /v3/mail/send`` for tests.

It checks the bearer key like SendGrid (401 otherwise), records every request (headers and
JSON body), and answers from a script of statuses (default 202 Accepted, empty body)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class SendGridRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeSendGrid:
    api_key: str
    url: str = ""
    requests: list[SendGridRequest] = field(default_factory=list)
    # Statuses answered in order; once used up, 202.
    script: list[int] = field(default_factory=list)
    retry_after: str | None = None


def _handler(state: FakeSendGrid) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            state.requests.append(
                SendGridRequest("POST", self.path, dict(self.headers.items()), body)
            )
            if self.path != "/v3/mail/send":
                return self._answer(404, {"errors": [{"message": "not found"}]})
            if self.headers.get("Authorization") != f"Bearer {state.api_key}":
                return self._answer(401, {"errors": [{"message": "unauthorized"}]})
            status = state.script.pop(0) if state.script else 202
            if status == 202:
                return self._answer(202, None)
            return self._answer(status, {"errors": [{"message": f"scripted {status}"}]})

        def _answer(self, status: int, payload: Any) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if status in (429, 503) and state.retry_after is not None:
                self.send_header("Retry-After", state.retry_after)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def sendgrid_server(api_key: str = "SG.test-key") -> Iterator[FakeSendGrid]:
    """A running fake SendGrid on 127.0.0.1 (free port); `.url` is its base URL."""
    state = FakeSendGrid(api_key=api_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
