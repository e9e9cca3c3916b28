"""The `helpdesk` command: run the stack or one of its pieces, and administer it.

    helpdesk dev                      Temporal dev server + migrations + API with the worker
    helpdesk api                      the API alone (uvicorn; TLS 1.3 when certificates are set)
    helpdesk worker                   a Temporal worker process
    helpdesk migrate                  apply the database migrations
    helpdesk create-admin --email E   an administrator with TOTP MFA (prints the otpauth URI)
    helpdesk audit verify             check the audit log's hash chain against its latest anchor
    helpdesk audit anchor             seal the chain's head and append it outside the database
    helpdesk backup create|verify|restore|prune   encrypted backups (helpdesk/backup/)
    helpdesk compliance check [--json]  the HIPAA self-check (exit 1 when a control fails)
    helpdesk analytics rebuild        recompute analytics facts and rollups from the rows

Every setting comes from HELPDESK_* environment variables (see README.md).

Each command imports what it runs inside its function, on purpose: `helpdesk --help` and
a command's usage errors stay fast (about 0.2 s instead of the seconds the API, the worker
or the models take to import). `cmd_worker` imports `workers.worker`, an upward import
allowed to this composition root alone (the layer contract in pyproject.toml).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import traceback
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from helpdesk import eventloop
from helpdesk.context import RequestContext, set_context
from helpdesk.errors import DomainError
from helpdesk.settings import Settings, get_settings

# The API's minimum for every account (api/schemas/auth.py).
MIN_ADMIN_PASSWORD = 12


def _settings() -> Settings:
    return get_settings()


def _configure_logging() -> None:
    from helpdesk import logs

    logs.configure(_settings().effective_log_format)


def cmd_dev(args: argparse.Namespace) -> int:
    from helpdesk.devserver import run_dev

    _configure_logging()
    return eventloop.run(run_dev(_settings()))


def cmd_api(args: argparse.Namespace) -> int:
    from helpdesk.devserver import run_api

    _configure_logging()
    return eventloop.run(run_api(_settings()))


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.worker import main as worker_main

    return worker_main()


def cmd_migrate(args: argparse.Namespace) -> int:
    from helpdesk.migrate import upgrade

    settings = _settings()
    if settings.is_sqlite:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, settings=settings)
    print("database migrated to the latest revision")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise ValueError("the two passwords differ")
    return first


async def _create_admin(settings: Settings, email: str, password: str, name: str | None) -> str:
    from helpdesk.runtime import build_runtime
    from helpdesk.security import new_totp_secret, totp_uri
    from helpdesk.services import users
    from helpdesk.services.sessions import prepare_runtime
    from models.enums import Role

    set_context(
        RequestContext(request_id=f"cli-{uuid.uuid4().hex[:12]}", user_agent="helpdesk-cli")
    )
    runtime = prepare_runtime(build_runtime(settings))
    secret = new_totp_secret()
    try:
        async with runtime.database.transaction() as session:
            user = await users.create_user(
                session,
                runtime,
                email=email,
                password=password,
                full_name=name,
                role=Role.ADMINISTRATOR,
                email_verified_at=datetime.now(UTC),
            )
            await users.seal_mfa_secret(session, runtime, user, secret)
            user.mfa_enabled = True
            await runtime.audit.record(
                session,
                "user.create",
                table="users",
                record_id=user.id,
                details={"role": Role.ADMINISTRATOR.value, "mfa": True, "via": "cli"},
            )
    finally:
        await runtime.close()
    return totp_uri(secret, email)


def cmd_create_admin(args: argparse.Namespace) -> int:
    try:
        password = _read_password(args)
    except (ValueError, EOFError, KeyboardInterrupt) as exc:
        print(f"helpdesk create-admin: {exc or 'cancelled'}", file=sys.stderr)
        return 1
    if len(password) < MIN_ADMIN_PASSWORD:
        print(
            f"helpdesk create-admin: the password needs at least {MIN_ADMIN_PASSWORD} characters",
            file=sys.stderr,
        )
        return 1
    from email_validator import EmailNotValidError, validate_email

    # The same rule as registration through the API: syntax only, reserved test domains allowed.
    email = args.email.strip()
    try:
        validate_email(email, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        print(f"helpdesk create-admin: --email is not a valid address: {exc}", file=sys.stderr)
        return 1
    try:
        uri = asyncio.run(_create_admin(_settings(), email, password, args.full_name))
    except DomainError as exc:
        print(f"helpdesk create-admin: {exc.message}", file=sys.stderr)
        return 1
    print("Administrator created. Enrol MFA by scanning this URI in an authenticator app:")
    print(uri)
    print("It is shown once; every sign-in of this administrator needs a code from it.")
    return 0


async def _verify_audit(settings: Settings) -> tuple[int, list[str]]:
    from helpdesk.audit_anchor import anchor_store, verify_against_anchor
    from helpdesk.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        async with runtime.database.read() as session:
            report = await verify_against_anchor(
                runtime.audit,
                settings.secret_bytes("audit_key"),
                session,
                anchor_store(settings),
                max_age=timedelta(minutes=settings.audit_anchor_max_age_minutes),
            )
    finally:
        await runtime.close()
    lines = [report.message]
    if report.stale:
        lines.append(
            f"WARNING: the latest anchor is older than {settings.audit_anchor_max_age_minutes:g} "
            "min: is the worker's audit-anchor schedule running?"
        )
    return (0 if report.ok else 1), lines


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Walk the chain and hold it against the latest anchor (exit 1 on any problem)."""
    code, lines = asyncio.run(_verify_audit(_settings()))
    for line in lines:
        print(line)
    return code


def cmd_audit_anchor(args: argparse.Namespace) -> int:
    """Seal the chain's head now and append it to the anchor store (the schedule's job)."""
    from helpdesk.audit_commands import anchor_database

    print(asyncio.run(anchor_database(_settings())))
    return 0


async def rewrap_keys(settings: Settings) -> tuple[int, str]:
    """Re-wrap every data key under the current KEK (after a rotation, or after moving the
    KEK into Key Vault); returns how many changed and the current KEK id."""
    from helpdesk.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        async with runtime.database.transaction() as session:
            count = await runtime.keys.rewrap_all(session)
        return count, runtime.keys.keyring.current_kek_id
    finally:
        await runtime.close()


async def _compliance(settings: Settings) -> Any:
    from helpdesk.compliance import run_checks
    from helpdesk.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        return await run_checks(runtime)
    finally:
        await runtime.close()


def cmd_compliance_check(args: argparse.Namespace) -> int:
    """The HIPAA self-check; exit 1 when a control fails."""
    report = asyncio.run(_compliance(_settings()))
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


async def _with_runtime(settings: Settings, work: Any) -> Any:
    from helpdesk.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        return await work(runtime)
    finally:
        await runtime.close()


def cmd_sessions_revoke_all(args: argparse.Namespace) -> int:
    """Incident response: end every live session (or one user's)."""
    from helpdesk.incident import revoke_all_sessions

    ended = asyncio.run(_with_runtime(_settings(), lambda rt: revoke_all_sessions(rt, args.user)))
    print(f"{ended} sessions revoked")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Incident response: one account's audit trail as JSON lines."""
    from helpdesk.incident import export_audit_trail

    out = open(args.output, "w") if args.output else sys.stdout
    try:
        count = asyncio.run(
            _with_runtime(_settings(), lambda rt: export_audit_trail(rt, args.user, out.write))
        )
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{count} audit rows exported", file=sys.stderr)
    return 0


def cmd_keys_rewrap(args: argparse.Namespace) -> int:
    count, kek_id = asyncio.run(rewrap_keys(_settings()))
    print(f"{count} data keys re-wrapped under {kek_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helpdesk",
        description="HIPAA-minded help desk: run the stack or administer it.",
        epilog="Configuration: HELPDESK_* environment variables or .env (see README.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "dev", help="everything in one process tree: Temporal dev server, migrations, API, worker"
    ).set_defaults(func=cmd_dev)
    commands.add_parser("api", help="the API (uvicorn)").set_defaults(func=cmd_api)
    commands.add_parser("worker", help="a Temporal worker process").set_defaults(func=cmd_worker)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    admin = commands.add_parser("create-admin", help="create an administrator with TOTP MFA")
    admin.add_argument("--email", required=True)
    admin.add_argument("--full-name", default=None)
    admin.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    admin.set_defaults(func=cmd_create_admin)
    audit = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    audit_commands.add_parser(
        "verify", help="verify the hash chain against its latest anchor"
    ).set_defaults(func=cmd_audit_verify)
    audit_commands.add_parser(
        "anchor", help="seal the chain's head now and append it to the anchor file"
    ).set_defaults(func=cmd_audit_anchor)
    keys = commands.add_parser("keys", help="key-encryption key tools")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    keys_commands.add_parser(
        "rewrap", help="re-wrap every data key under the current key-encryption key"
    ).set_defaults(func=cmd_keys_rewrap)
    export = audit_commands.add_parser("export", help="one account's audit trail, JSON lines")
    export.add_argument("--user", type=uuid.UUID, required=True, help="the account's id")
    export.add_argument("--output", default=None, help="file to write (default: stdout)")
    export.set_defaults(func=cmd_audit_export)
    user_sessions = commands.add_parser("sessions", help="login sessions")
    sessions_commands = user_sessions.add_subparsers(
        dest="sessions_command", required=True, metavar="ACTION"
    )
    revoke = sessions_commands.add_parser("revoke-all", help="end every live session now")
    revoke.add_argument("--user", type=uuid.UUID, default=None, help="only this account's")
    revoke.set_defaults(func=cmd_sessions_revoke_all)
    compliance = commands.add_parser("compliance", help="the HIPAA self-check")
    compliance_commands = compliance.add_subparsers(
        dest="compliance_command", required=True, metavar="ACTION"
    )
    check = compliance_commands.add_parser("check", help="check every control; exit 1 on a fail")
    check.add_argument("--json", action="store_true", help="the report as JSON")
    check.set_defaults(func=cmd_compliance_check)
    from helpdesk.backup.commands import add_backup_parser

    add_backup_parser(commands)
    from helpdesk.analytics.commands import add_analytics_parser

    add_analytics_parser(commands)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; returns its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:
        # Settings refused to load: name the settings, never their values.
        fields = ", ".join(
            "HELPDESK_" + str(err["loc"][0]).upper() if err["loc"] else err["msg"]
            for err in exc.errors()
        )
        details = "; ".join(err["msg"] for err in exc.errors())
        print(f"helpdesk: invalid configuration ({fields}): {details}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point. Leaves with os._exit after an orderly shutdown: the Temporal
    core's threads can crash interpreter finalisation (sdk-python#300, TEMPORAL.md)."""
    try:
        code = run(argv)
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        # A bug, not an operator error: show it, but still leave through os._exit.
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
