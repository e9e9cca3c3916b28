"""Outgoing mail behind one interface. Messages never carry PHI: what happened and a link.

Backends: console (logs the message with its link), file (appends JSON lines to a mailbox
file). SMTP and SendGrid arrive with the communication issue.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from helpdesk.settings import EmailBackendName, Settings

log = logging.getLogger("helpdesk.email")


@dataclass(frozen=True, slots=True)
class EmailMessage:
    to: str
    subject: str
    body: str
    # Deduplication key: a retried activity sends a message with the same key once.
    message_key: str = ""


class EmailBackend(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class ConsoleEmailBackend:
    """Development: the message goes to the log (addresses masked)."""

    async def send(self, message: EmailMessage) -> None:
        log.info("email subject=%r body=%r", message.subject, message.body)


class FileEmailBackend:
    """Development and tests: one JSON line per message appended to a mailbox file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, message: EmailMessage) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"at": datetime.now(UTC).isoformat(), **asdict(message)}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def messages(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


def build_email_backend(settings: Settings) -> EmailBackend:
    if settings.email_backend is EmailBackendName.FILE:
        return FileEmailBackend(settings.email_file_path or settings.var_dir / "mail.log")
    return ConsoleEmailBackend()
