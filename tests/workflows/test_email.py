"""Email: SMTP with STARTTLS against a real aiosmtpd, SendGrid against a loopback v3 server,
error classification, PHI-free templates, and the send-once activity on real Temporal."""

from __future__ import annotations

import email
import email.policy
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.notifications import NotificationActivities, NotifyBatch, NotifyInput, PushInput
from helpdesk.email import (
    EmailMessage,
    EmailPermanentError,
    EmailTransientError,
    FileEmailBackend,
    SendGridEmailBackend,
    SmtpEmailBackend,
    build_email_backend,
    message_id,
)
from helpdesk.notifications import (
    AccountEmailKind,
    NotificationKind,
    TicketFacts,
    render_account_email,
    render_ticket_email,
)
from helpdesk.rules.notify import PushEvent
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from models.audit import AuditLog
from models.enums import Role, TicketStatus
from models.ticket import NotificationLog, Ticket
from tests.conftest import free_port, make_settings
from tests.support.comm import insert_ticket
from tests.support.factories import Actor, make_user
from tests.support.notify_workflow import MAX_ATTEMPTS, NotifyOnceWorkflow
from tests.support.sendgrid_server import sendgrid_server
from tests.support.smtp_server import make_certificates, smtp_server

MESSAGE = EmailMessage(
    to="patient@example.com",
    subject="[Help desk] Ticket #12 received",
    body="Hello,\n\nWe received your ticket #12.\n",
    message_key="email:ticket_created:k1",
)


def _parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


# --- SMTP ------------------------------------------------------------------------------


async def test_smtp_starttls_with_trusted_ca_and_login_delivers(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "pki")
    with smtp_server(certificates=certs, username="mailer", password="s3cret") as server:
        settings = make_settings(
            tmp_path / "var",
            email_backend="smtp",
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_ca_file=certs.ca_file,
            smtp_username="mailer",
            smtp_password="s3cret",
            email_from="helpdesk@clinic.example",
        )
        backend = build_email_backend(settings)
        assert isinstance(backend, SmtpEmailBackend)
        await backend.send(MESSAGE)
    [mail] = server.handler.messages
    assert mail.tls and mail.authenticated
    assert mail.mail_from == "helpdesk@clinic.example"
    assert mail.rcpt_tos == ["patient@example.com"]
    parsed = _parsed(mail.content)
    assert parsed["Subject"] == MESSAGE.subject
    assert parsed["Message-ID"] == message_id(MESSAGE.message_key, "helpdesk@clinic.example")
    assert "We received your ticket #12." in parsed.get_content()


async def test_smtp_refuses_a_server_certificate_from_an_untrusted_ca(tmp_path: Path) -> None:
    trusted = make_certificates(tmp_path / "trusted", "trusted")
    other = make_certificates(tmp_path / "other", "other")
    with smtp_server(certificates=other) as server:
        for ca_file in (trusted.ca_file, None):  # our CA, then the system CAs
            backend = SmtpEmailBackend(
                host=server.host,
                port=server.port,
                sender="helpdesk@clinic.example",
                ca_file=ca_file,
                timeout=5,
            )
            with pytest.raises(EmailTransientError, match="certificate not trusted") as info:
                await backend.send(MESSAGE)
            assert not info.value.maybe_delivered
    assert server.handler.messages == []


async def test_smtp_never_falls_back_to_cleartext(tmp_path: Path) -> None:
    with smtp_server() as server:  # offers no STARTTLS
        backend = SmtpEmailBackend(
            host=server.host, port=server.port, sender="helpdesk@clinic.example", timeout=5
        )
        with pytest.raises(EmailTransientError, match="STARTTLS"):
            await backend.send(MESSAGE)
    assert server.handler.messages == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("550 5.1.1 mailbox unavailable", EmailPermanentError),
        ("451 4.3.0 try again later", EmailTransientError),
    ],
)
async def test_smtp_recipient_refusals_are_classified(
    tmp_path: Path, reply: str, error: type[Exception]
) -> None:
    certs = make_certificates(tmp_path / "pki")
    with smtp_server(certificates=certs) as server:
        server.handler.rcpt_replies["refuse"] = reply
        backend = SmtpEmailBackend(
            host=server.host,
            port=server.port,
            sender="helpdesk@clinic.example",
            ca_file=certs.ca_file,
        )
        with pytest.raises(error, match=reply[:3]) as info:
            await backend.send(EmailMessage("refuse-me@example.com", "s", "b"))
    assert "refuse-me" not in str(info.value)  # no address in error messages
    assert server.handler.messages == []


async def test_smtp_connection_refused_is_transient_and_not_delivered() -> None:
    backend = SmtpEmailBackend(
        host="127.0.0.1", port=free_port(), sender="helpdesk@clinic.example", timeout=5
    )
    with pytest.raises(EmailTransientError) as info:
        await backend.send(MESSAGE)
    assert not info.value.maybe_delivered


async def test_a_malformed_address_is_permanent_before_any_connection() -> None:
    backend = SmtpEmailBackend(host="127.0.0.1", port=free_port(), sender="a@b.example")
    with pytest.raises(EmailPermanentError, match="invalid recipient"):
        await backend.send(EmailMessage("not an address", "s", "b"))


# --- SendGrid --------------------------------------------------------------------------


async def test_sendgrid_library_request_reaches_the_v3_endpoint(tmp_path: Path) -> None:
    with sendgrid_server("SG.abc") as fake:
        settings = make_settings(
            tmp_path / "var",
            email_backend="sendgrid",
            sendgrid_api_key="SG.abc",
            sendgrid_host=fake.url,
            email_from="helpdesk@clinic.example",
        )
        backend = build_email_backend(settings)
        assert isinstance(backend, SendGridEmailBackend)
        await backend.send(MESSAGE)
    [request] = fake.requests
    assert request.path == "/v3/mail/send"
    assert request.headers["Authorization"] == "Bearer SG.abc"
    assert request.headers["Content-Type"] == "application/json"
    body = request.body
    assert body["from"] == {"email": "helpdesk@clinic.example"}
    assert body["personalizations"][0]["to"] == [{"email": "patient@example.com"}]
    assert body["subject"] == MESSAGE.subject
    assert body["content"] == [{"type": "text/plain", "value": MESSAGE.body}]
    assert body["headers"]["Message-ID"] == message_id(
        MESSAGE.message_key, "helpdesk@clinic.example"
    )


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [
        (400, EmailPermanentError, None),
        (403, EmailPermanentError, None),
        (429, EmailTransientError, 7.0),
        (503, EmailTransientError, 7.0),
    ],
)
async def test_sendgrid_statuses_are_classified(
    status: int, error: type[Exception], retry_after: float | None
) -> None:
    with sendgrid_server() as fake:
        fake.script = [status]
        fake.retry_after = "7"
        backend = SendGridEmailBackend(api_key=fake.api_key, host=fake.url, sender="a@b.example")
        with pytest.raises(error, match=str(status)) as info:
            await backend.send(MESSAGE)
    assert getattr(info.value, "retry_after", None) == retry_after


async def test_sendgrid_wrong_key_is_permanent_and_unreachable_is_transient() -> None:
    with sendgrid_server("SG.right") as fake:
        backend = SendGridEmailBackend(api_key="SG.wrong", host=fake.url, sender="a@b.example")
        with pytest.raises(EmailPermanentError, match="401"):
            await backend.send(MESSAGE)
    gone = SendGridEmailBackend(
        api_key="k", host=f"http://127.0.0.1:{free_port()}", sender="a@b.example", timeout=5
    )
    with pytest.raises(EmailTransientError) as info:
        await gone.send(MESSAGE)
    assert not info.value.maybe_delivered


def test_sendgrid_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    from helpdesk.settings import ConfigurationError

    with pytest.raises(ConfigurationError, match="SENDGRID_API_KEY"):
        build_email_backend(make_settings(tmp_path / "var", email_backend="sendgrid"))


# --- templates -------------------------------------------------------------------------


def test_every_ticket_template_renders_a_portal_link_and_forbids_free_text(
    settings: Settings,
) -> None:
    settings.public_base_url = "https://portal.clinic.example/"
    ticket_id = uuid.uuid4()
    facts = TicketFacts(
        ticket_id=ticket_id,
        number=4321,
        status=TicketStatus.RESOLVED,
        previous_status=TicketStatus.IN_PROGRESS,
        escalation_level=2,
        sla_clock="first_response",
    )
    for kind in NotificationKind:
        rendered = render_ticket_email(kind, facts, settings)
        assert "#4321" in rendered.subject
        assert f"https://portal.clinic.example/tickets/{ticket_id}" in rendered.body
    for field in ("title", "description", "comment", "requester_name", "email"):
        with pytest.raises(ValidationError):
            TicketFacts(ticket_id=ticket_id, number=1, **{field: "CANARY"})


def test_account_emails_link_to_the_configured_portal_with_the_token(settings: Settings) -> None:
    settings.public_base_url = "https://portal.clinic.example"
    verify = render_account_email(AccountEmailKind.VERIFY_EMAIL, "tok/en+1", settings)
    reset = render_account_email(AccountEmailKind.PASSWORD_RESET, "tok/en+1", settings)
    assert "https://portal.clinic.example/verify-email#token=tok%2Fen%2B1" in verify.body
    assert "https://portal.clinic.example/reset-password#token=tok%2Fen%2B1" in reset.body
    assert "30 minutes" in reset.body


# --- the activity ----------------------------------------------------------------------

CANARY_TITLE = "CANARY-TITLE-hemoglobin-a1c-7f3e"
CANARY_NAME = "CANARY-NAME-Zebulon-Quaxley"


async def _ticket(runtime: Runtime, requester: Actor, title: str = CANARY_TITLE) -> Ticket:
    return await insert_ticket(runtime, requester.id, title)


def _notify(kind: NotificationKind, ticket: Ticket, recipient: Actor, event: str) -> NotifyInput:
    return NotifyInput(
        kind=kind,
        event_key=event,
        recipient_id=recipient.id,
        ticket_id=ticket.id,
        status=TicketStatus.IN_PROGRESS,
        previous_status=TicketStatus.OPEN,
        escalation_level=1,
        sla_clock="resolution",
    )


async def test_no_email_kind_carries_ticket_text_or_names(runtime: Runtime) -> None:
    requester = await make_user(runtime, Role.END_USER, full_name=CANARY_NAME)
    ticket = await _ticket(runtime, requester)
    activities = NotificationActivities(runtime)
    env = ActivityEnvironment()
    for kind in NotificationKind:
        result = await env.run(activities.send_email, _notify(kind, ticket, requester, "e1"))
        assert result.outcome == "sent"
    mailbox = runtime.email
    assert isinstance(mailbox, FileEmailBackend)
    messages = mailbox.messages()
    assert len(messages) == len(NotificationKind)
    for message in messages:
        assert message["to"] == requester.email
        text = message["subject"] + message["body"]
        assert f"#{ticket.number}" in text
        assert CANARY_TITLE not in text and "hemoglobin" not in text
        assert CANARY_NAME not in text and "Zebulon" not in text
        assert requester.email not in text
        assert text.count(runtime.settings.public_base_url) == 1


async def test_a_retried_or_repeated_notification_is_sent_once(runtime: Runtime) -> None:
    requester = await make_user(runtime)
    ticket = await _ticket(runtime, requester)
    activities = NotificationActivities(runtime)
    notify = _notify(NotificationKind.STATUS_CHANGED, ticket, requester, "status:3")
    env = ActivityEnvironment()
    assert (await env.run(activities.send_email, notify)).outcome == "sent"
    assert (await env.run(activities.send_email, notify)).outcome == "duplicate"
    assert len(runtime.email.messages()) == 1
    async with runtime.database.transaction() as session:
        row = await session.get(NotificationLog, notify.notification_key)
        assert row is not None and row.channel == "email" and row.recipient_id == requester.id


async def test_a_claim_left_by_a_crash_is_not_resent(runtime: Runtime) -> None:
    """At-most-once: a worker that died after committing its claim, before the provider
    answered, leaves a row; the retry must not send a second copy."""
    requester = await make_user(runtime)
    ticket = await _ticket(runtime, requester)
    notify = _notify(NotificationKind.PUBLIC_REPLY, ticket, requester, "comment:9")
    async with runtime.database.transaction() as session:
        session.add(
            NotificationLog(
                key=notify.notification_key,
                channel="email",
                ticket_id=ticket.id,
                recipient_id=requester.id,
                kind=notify.kind.value,
            )
        )
    result = await ActivityEnvironment().run(NotificationActivities(runtime).send_email, notify)
    assert result.outcome == "duplicate"
    assert runtime.email.messages() == []


async def test_inactive_recipient_is_skipped(runtime: Runtime) -> None:
    requester = await make_user(runtime)
    ticket = await _ticket(runtime, requester)
    async with runtime.database.transaction() as session:
        user = await session.get(type(requester.user), requester.id)
        assert user is not None
        user.is_active = False
    notify = _notify(NotificationKind.TICKET_CREATED, ticket, requester, "created")
    result = await ActivityEnvironment().run(NotificationActivities(runtime).send_email, notify)
    assert result.outcome == "skipped"
    assert runtime.email.messages() == []


async def _run_on_temporal(runtime: Runtime, temporal_client: object, notify: NotifyInput) -> str:
    from temporalio.client import Client

    assert isinstance(temporal_client, Client)
    activities = NotificationActivities(runtime)
    queue = runtime.settings.temporal_task_queue
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[NotifyOnceWorkflow],
        activities=[activities.send_email],
    ):
        result: str = await temporal_client.execute_workflow(
            NotifyOnceWorkflow.run, notify, id=f"notify-test-{uuid.uuid4()}", task_queue=queue
        )
    return result


async def _log_rows(runtime: Runtime, key: str) -> int:
    async with runtime.database.transaction() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(NotificationLog).where(NotificationLog.key == key)
            )
            or 0
        )


@pytest.mark.temporal
async def test_sendgrid_transient_failures_are_retried_by_temporal_then_sent_once(
    runtime: Runtime, temporal_client: object
) -> None:
    requester = await make_user(runtime)
    ticket = await _ticket(runtime, requester)
    notify = _notify(NotificationKind.TICKET_ASSIGNED, ticket, requester, "assign:1")
    with sendgrid_server() as fake:
        runtime.email = SendGridEmailBackend(
            api_key=fake.api_key, host=fake.url, sender="helpdesk@clinic.example"
        )
        fake.script = [503, 429]
        assert await _run_on_temporal(runtime, temporal_client, notify) == "sent"
        assert len(fake.requests) == 3
        # A second run of the same notification (a replayed or retried workflow) sends nothing.
        assert await _run_on_temporal(runtime, temporal_client, notify) == "duplicate"
        assert len(fake.requests) == 3
    assert await _log_rows(runtime, notify.notification_key) == 1


@pytest.mark.temporal
async def test_sendgrid_permanent_failure_is_not_retried(
    runtime: Runtime, temporal_client: object
) -> None:
    requester = await make_user(runtime)
    ticket = await _ticket(runtime, requester)
    notify = _notify(NotificationKind.ESCALATED, ticket, requester, "escalate:1")
    with sendgrid_server() as fake:
        runtime.email = SendGridEmailBackend(
            api_key=fake.api_key, host=fake.url, sender="helpdesk@clinic.example"
        )
        fake.script = [400, 400, 400]
        outcome = await _run_on_temporal(runtime, temporal_client, notify)
        assert outcome == "failed:EmailPermanentError:NON_RETRYABLE_FAILURE"
        assert len(fake.requests) == 1
    assert await _log_rows(runtime, notify.notification_key) == 0
    async with runtime.database.transaction() as session:
        failures = await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(AuditLog.action == "notification.email", AuditLog.outcome == "failure")
        )
    assert failures == 1


@pytest.mark.temporal
async def test_smtp_550_is_not_retried_and_connection_refused_is(
    runtime: Runtime, temporal_client: object, tmp_path: Path
) -> None:
    requester = await make_user(runtime, email="refuse-me@example.com")
    ticket = await _ticket(runtime, requester)
    certs = make_certificates(tmp_path / "pki")
    with smtp_server(certificates=certs) as server:
        server.handler.rcpt_replies["refuse-me"] = "550 5.1.1 mailbox unavailable"
        runtime.email = SmtpEmailBackend(
            host=server.host,
            port=server.port,
            sender="helpdesk@clinic.example",
            ca_file=certs.ca_file,
        )
        notify = _notify(NotificationKind.SLA_BREACH, ticket, requester, "breach:1")
        outcome = await _run_on_temporal(runtime, temporal_client, notify)
        assert outcome == "failed:EmailPermanentError:NON_RETRYABLE_FAILURE"
        assert server.handler.rcpt_attempts == 1
    runtime.email = SmtpEmailBackend(
        host="127.0.0.1", port=free_port(), sender="helpdesk@clinic.example", timeout=5
    )
    notify = _notify(NotificationKind.SLA_WARNING, ticket, requester, "warn:1")
    outcome = await _run_on_temporal(runtime, temporal_client, notify)
    assert outcome == "failed:EmailTransientError:MAXIMUM_ATTEMPTS_REACHED"
    assert await _log_rows(runtime, notify.notification_key) == 0
    async with runtime.database.transaction() as session:
        failures = await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.action == "notification.email",
                AuditLog.outcome == "failure",
                AuditLog.details["error"].as_string() == "EmailTransientError",
            )
        )
    assert failures == MAX_ATTEMPTS


# --- one activity for all of a change's notifications ---------------------------------------


def _push(ticket: Ticket) -> PushInput:
    return PushInput(
        event=PushEvent.TICKET_STATUS_CHANGED,
        event_id=f"{ticket.id}:batch",
        ticket_id=ticket.id,
        status=TicketStatus.IN_PROGRESS,
    )


async def test_a_batch_goes_on_past_a_permanent_refusal(runtime: Runtime) -> None:
    """`notify_change`: a refused address is `failed` (not retried) and the other email of
    the same change still goes out; the push goes first."""
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket = await _ticket(runtime, requester)
    batch = NotifyBatch(
        emails=[
            _notify(NotificationKind.STATUS_CHANGED, ticket, requester, "batch:1"),
            _notify(NotificationKind.STATUS_CHANGED, ticket, agent, "batch:1"),
        ],
        pushes=[_push(ticket)],
    )
    with sendgrid_server() as fake:
        runtime.email = SendGridEmailBackend(
            api_key=fake.api_key, host=fake.url, sender="helpdesk@clinic.example"
        )
        fake.script = [400]
        outcomes = await ActivityEnvironment().run(
            NotificationActivities(runtime).notify_change, batch
        )
        assert outcomes == ["pushed", "failed", "sent"]
        assert len(fake.requests) == 2
    assert await _log_rows(runtime, batch.emails[0].notification_key) == 0
    assert await _log_rows(runtime, batch.emails[1].notification_key) == 1


async def test_a_batch_retried_after_a_transient_error_sends_each_email_once(
    runtime: Runtime,
) -> None:
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket = await _ticket(runtime, requester)
    batch = NotifyBatch(
        emails=[
            _notify(NotificationKind.TICKET_CREATED, ticket, requester, "created"),
            _notify(NotificationKind.TICKET_ASSIGNED, ticket, agent, "created"),
        ]
    )
    activities = NotificationActivities(runtime)
    with sendgrid_server() as fake:
        runtime.email = SendGridEmailBackend(
            api_key=fake.api_key, host=fake.url, sender="helpdesk@clinic.example"
        )
        fake.script = [202, 503]
        with pytest.raises(ApplicationError) as refused:
            await ActivityEnvironment().run(activities.notify_change, batch)
        assert refused.value.type == "EmailTransientError" and not refused.value.non_retryable
        # Temporal's retry of the same activity: the first email is not sent again.
        assert await ActivityEnvironment().run(activities.notify_change, batch) == [
            "duplicate",
            "sent",
        ]
        assert len(fake.requests) == 3
    for notify in batch.emails:
        assert await _log_rows(runtime, notify.notification_key) == 1


async def test_a_transient_error_releases_the_claims_not_attempted_yet(runtime: Runtime) -> None:
    """The batch claims every email in one transaction; when the first is refused for now,
    the later ones were never handed over: their claims are released (and audited as such)
    so the retry sends all three, each once, and the audit chain still verifies."""
    requester = await make_user(runtime)
    agents = [await make_user(runtime, Role.SUPPORT_AGENT) for _ in range(2)]
    ticket = await _ticket(runtime, requester)
    batch = NotifyBatch(
        emails=[
            _notify(NotificationKind.STATUS_CHANGED, ticket, person, "batch:7")
            for person in (requester, *agents)
        ]
    )
    activities = NotificationActivities(runtime)
    with sendgrid_server() as fake:
        runtime.email = SendGridEmailBackend(
            api_key=fake.api_key, host=fake.url, sender="helpdesk@clinic.example"
        )
        fake.script = [503]
        with pytest.raises(ApplicationError):
            await ActivityEnvironment().run(activities.notify_change, batch)
        assert len(fake.requests) == 1
        for notify in batch.emails:
            assert await _log_rows(runtime, notify.notification_key) == 0
        assert await ActivityEnvironment().run(activities.notify_change, batch) == ["sent"] * 3
        assert sorted(
            r.body["personalizations"][0]["to"][0]["email"] for r in fake.requests[1:]
        ) == (sorted(p.email for p in (requester, *agents)))
    async with runtime.database.read() as session:
        reasons = (
            await session.scalars(
                select(AuditLog.details["error"].as_string()).where(
                    AuditLog.action == "notification.email", AuditLog.outcome == "failure"
                )
            )
        ).all()
        assert sorted(reasons) == ["EmailTransientError", "NotAttempted", "NotAttempted"]
        assert (await runtime.audit.verify(session)).ok


async def test_a_batch_reports_skipped_and_duplicate_recipients_in_input_order(
    runtime: Runtime,
) -> None:
    requester = await make_user(runtime)
    gone = await make_user(runtime, Role.SUPPORT_AGENT)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket = await _ticket(runtime, requester)
    async with runtime.database.transaction() as session:
        user = await session.get(type(gone.user), gone.id)
        assert user is not None
        user.is_active = False
    first = _notify(NotificationKind.STATUS_CHANGED, ticket, agent, "batch:8")
    activities = NotificationActivities(runtime)
    assert (await ActivityEnvironment().run(activities.send_email, first)).outcome == "sent"
    batch = NotifyBatch(
        emails=[
            _notify(NotificationKind.STATUS_CHANGED, ticket, requester, "batch:8"),
            _notify(NotificationKind.STATUS_CHANGED, ticket, gone, "batch:8"),
            first,
        ]
    )
    outcomes = await ActivityEnvironment().run(activities.notify_change, batch)
    assert outcomes == ["sent", "skipped", "duplicate"]
    assert [m["to"] for m in runtime.email.messages()] == [agent.email, requester.email]


async def test_a_claim_won_by_a_concurrent_attempt_is_not_sent_twice(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the batch's look-ups and its claims another attempt claims one email: the
    batch's claim transaction fails as a whole and each email is decided on its own."""
    requester = await make_user(runtime)
    agent = await make_user(runtime, Role.SUPPORT_AGENT)
    ticket = await _ticket(runtime, requester)
    mine = _notify(NotificationKind.STATUS_CHANGED, ticket, requester, "batch:9")
    raced = _notify(NotificationKind.STATUS_CHANGED, ticket, agent, "batch:9")
    activities = NotificationActivities(runtime)
    plan = activities._plan_emails

    async def plan_then_race(*args: object) -> object:
        plans = await plan(*args)  # type: ignore[arg-type]
        assert (await activities.send_email(raced)).outcome == "sent"  # the other attempt
        return plans

    monkeypatch.setattr(activities, "_plan_emails", plan_then_race)
    outcomes = await ActivityEnvironment().run(
        activities.notify_change, NotifyBatch(emails=[mine, raced])
    )
    assert outcomes == ["sent", "duplicate"]
    assert sorted(m["to"] for m in runtime.email.messages()) == sorted(
        [requester.email, agent.email]
    )
    for notify in (mine, raced):
        assert await _log_rows(runtime, notify.notification_key) == 1
