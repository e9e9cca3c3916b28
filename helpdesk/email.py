"""Outgoing mail behind one interface. Messages never carry PHI: what happened and a link.

Backends, chosen by ``settings.email_backend``:

- ``console``: logs subject and body (never the address), for development;
- ``file``: appends JSON lines to a mailbox file, for development and tests;
- ``smtp``: ``aiosmtplib`` (asyncio, no thread), STARTTLS required when ``smtp_starttls`` (the
  certificate is verified against the system CAs or ``smtp_ca_file``, hostname included),
  credentials from settings, every socket operation bounded by ``smtp_timeout_seconds``;
- ``sendgrid``: the ``sendgrid`` library's v3 ``/mail/send`` at ``sendgrid_host``.

Every failure is one of two types so the notification activity knows whether to retry:
``EmailPermanentError`` (the same message will never go through: bad address, 5xx SMTP
reply, SendGrid 4xx other than 429, bad credentials) and ``EmailTransientError`` (it may go
through later: connection refused, timeouts, 4xx SMTP reply, SendGrid 429/5xx, a TLS
handshake or certificate failure that an operator can fix). Error messages carry status
codes only, never the address or the server's reply text (which often echoes the address).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import urllib.error
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage as MimeMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from email_validator import EmailNotValidError, validate_email

from helpdesk.settings import ConfigurationError, Settings
from helpdesk.settings_features import EmailBackendName

log = logging.getLogger("helpdesk.email")

# python_http_client logs the request payload and headers (the SendGrid API key and the
# recipient's address) at DEBUG: keep that logger above DEBUG whatever the root level is.
logging.getLogger("python_http_client.client").setLevel(logging.INFO)


@dataclass(frozen=True, slots=True)
class EmailMessage:
    to: str
    subject: str
    body: str
    # Deduplication key: a retried activity sends a message with the same key once.
    message_key: str = ""


class EmailError(Exception):
    """A message was not handed over to the mail provider."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, maybe_delivered: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # True when the connection broke after the message was handed over and before the
        # provider's answer: it may have been delivered, so a retry could send it twice.
        self.maybe_delivered = maybe_delivered


class EmailPermanentError(EmailError):
    """Retrying the same message cannot succeed (bad address, rejected, bad credentials)."""


class EmailTransientError(EmailError):
    """The provider could not take the message now; the same message may succeed later."""


class EmailBackend(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def check_address(address: str) -> str:
    """The address in normalised form, or EmailPermanentError. Syntax only: no DNS lookups,
    reserved test domains allowed; whether the mailbox exists is the provider's answer."""
    try:
        return validate_email(
            address, check_deliverability=False, globally_deliverable=False, test_environment=True
        ).normalized
    except EmailNotValidError as exc:
        raise EmailPermanentError("invalid recipient address") from exc


def message_id(message_key: str, sender: str) -> str:
    """A Message-ID derived from the notification key, so that a duplicate delivery (if a
    provider ever retried on its own) carries the same id and mail clients fold it."""
    domain = sender.rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(message_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


class ConsoleEmailBackend:
    """Development: the message goes to the log (addresses masked)."""

    async def send(self, message: EmailMessage) -> None:
        log.info("email subject=%r body=%r", message.subject, message.body)


class FileEmailBackend:
    """Development and tests: one JSON line per message appended to a mailbox file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, message: EmailMessage) -> None:
        check_address(message.to)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"at": datetime.now(UTC).isoformat(), **asdict(message)}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def messages(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


def smtp_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and hostname verification against the system CAs or the given bundle."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _smtp_reply_error(code: int, what: str) -> EmailError:
    kind = EmailPermanentError if code >= 500 else EmailTransientError
    return kind(f"SMTP {what} refused with {code}")


class SmtpEmailBackend:
    """SMTP submission with STARTTLS (required unless disabled), in a worker thread."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        ca_file: Path | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.tls_context = smtp_tls_context(ca_file) if starttls else None

    def _mime(self, message: EmailMessage, to: str) -> MimeMessage:
        mime = MimeMessage()
        mime["From"] = self.sender
        mime["To"] = to
        mime["Subject"] = message.subject
        mime["Date"] = formatdate(usegmt=True)
        if message.message_key:
            mime["Message-ID"] = message_id(message.message_key, self.sender)
        mime.set_content(message.body)
        return mime

    async def send(self, message: EmailMessage) -> None:
        to = check_address(message.to)
        mime = self._mime(message, to)
        handed_over = False
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            use_tls=False,
            start_tls=False,  # decided below: never an opportunistic, silent downgrade
        )
        try:
            async with smtp:
                await smtp.ehlo()
                if self.tls_context is not None:
                    if not smtp.supports_extension("starttls"):
                        # Never fall back to cleartext: a stripped STARTTLS may be an attack.
                        raise EmailTransientError("SMTP server does not offer STARTTLS")
                    await smtp.starttls(tls_context=self.tls_context)
                    await smtp.ehlo()
                if self.username:
                    await smtp.login(self.username, self.password or "")
                handed_over = True
                await smtp.send_message(mime, sender=self.sender, recipients=[to])
        except EmailError:
            raise
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            raise _smtp_reply_error(min(codes, default=550), "recipient") from None
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise _smtp_reply_error(exc.code, "recipient") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _smtp_reply_error(exc.code, "authentication") from None
        except aiosmtplib.SMTPNotSupported:
            raise EmailPermanentError("SMTP server lacks a required extension") from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            raise EmailTransientError(
                "SMTP server unavailable", maybe_delivered=handed_over
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _smtp_reply_error(exc.code, "message") from None
        except ssl.SSLCertVerificationError:
            raise EmailTransientError("SMTP server certificate not trusted") from None
        except ssl.SSLError:
            raise EmailTransientError("SMTP TLS handshake failed") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
                raise EmailTransientError("SMTP server certificate not trusted") from None
            if isinstance(exc.__cause__, ssl.SSLError):
                raise EmailTransientError("SMTP TLS handshake failed") from None
            # Connection refused or reset, timeouts, a server that hung up. Once the message
            # was being transferred, silence does not prove it was not accepted.
            raise EmailTransientError(
                "SMTP server unavailable", maybe_delivered=handed_over
            ) from None


class SendGridEmailBackend:
    """SendGrid's v3 mail send through the official library (blocking: run in a thread)."""

    def __init__(self, *, api_key: str, host: str, sender: str, timeout: float = 15.0) -> None:
        self.api_key = api_key
        self.host = host.rstrip("/")
        self.sender = sender
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        to = check_address(message.to)
        await asyncio.to_thread(self._send_blocking, self._body(message, to))

    def _body(self, message: EmailMessage, to: str) -> dict[str, Any]:
        # Lazy (here and in _send_blocking): the SendGrid SDK loads only with that backend.
        from sendgrid.helpers.mail import CustomArg, Header, Mail

        mail = Mail(
            from_email=self.sender,
            to_emails=to,
            subject=message.subject,
            plain_text_content=message.body,
        )
        if message.message_key:
            mail.header = Header("Message-ID", message_id(message.message_key, self.sender))
            mail.custom_arg = CustomArg("notification_key", message.message_key[:100])
        body: dict[str, Any] = mail.get()
        return body

    def _send_blocking(self, body: dict[str, Any]) -> None:
        from python_http_client.exceptions import HTTPError
        from sendgrid import SendGridAPIClient

        client = SendGridAPIClient(api_key=self.api_key, host=self.host)
        try:
            response = client.client.mail.send.post(request_body=body, timeout=self.timeout)
        except HTTPError as exc:
            status = int(exc.status_code)
            if status == 429 or status >= 500:
                raise EmailTransientError(
                    f"SendGrid answered {status}", retry_after=_retry_after(exc.headers)
                ) from None
            raise EmailPermanentError(f"SendGrid refused the message with {status}") from None
        except urllib.error.URLError:
            # Raised while connecting (refused, DNS, TLS): the request never reached SendGrid.
            raise EmailTransientError("SendGrid unreachable") from None
        except OSError:
            # A timeout or reset after the request was sent: it may have been accepted.
            raise EmailTransientError("SendGrid did not answer", maybe_delivered=True) from None
        if response.status_code >= 300:
            raise EmailTransientError(f"SendGrid answered {response.status_code}")


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def build_email_backend(settings: Settings) -> EmailBackend:
    """The backend the settings name; a misconfigured provider refuses to start."""
    if settings.email_backend is EmailBackendName.FILE:
        return FileEmailBackend(settings.email_file_path or settings.var_dir / "mail.log")
    if settings.email_backend is EmailBackendName.SMTP:
        return SmtpEmailBackend(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            ca_file=settings.smtp_ca_file,
            timeout=settings.smtp_timeout_seconds,
        )
    if settings.email_backend is EmailBackendName.SENDGRID:
        if settings.sendgrid_api_key is None:
            raise ConfigurationError("HELPDESK_SENDGRID_API_KEY is required for SendGrid")
        return SendGridEmailBackend(
            api_key=settings.sendgrid_api_key.get_secret_value(),
            host=settings.sendgrid_host,
            sender=settings.email_from,
            timeout=settings.sendgrid_timeout_seconds,
        )
    return ConsoleEmailBackend()
