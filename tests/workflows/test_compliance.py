"""The HIPAA self-check: a correct production configuration passes every control, a broken
one names each broken control, and the daily schedule mails the administrators."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from api.app import prepare_runtime
from helpdesk import compliance
from helpdesk.audit_commands import anchor_database
from helpdesk.runtime import Runtime, build_runtime
from helpdesk.settings import Settings
from models.enums import Role
from tests.conftest import make_settings
from tests.support.factories import make_user

SECRETS = (
    "jwt_secret",
    "kek",
    "blind_index_key",
    "audit_key",
    "payload_codec_key",
    "command_key",
)


def production_settings(base: Settings, var_dir: Path, **overrides: Any) -> Settings:
    """Production settings over a copy of `base`'s database, with `base`'s keys (so the rows
    it sealed open), TLS, SMTP and long secrets."""
    var_dir.mkdir(parents=True, exist_ok=True)
    db = var_dir / "helpdesk.db"
    # The backup API copies what the WAL holds too (a file copy would miss recent rows).
    source = sqlite3.connect(make_url(base.database_url).database or "")
    target = sqlite3.connect(db)
    with target:
        source.backup(target)
    source.close()
    target.close()
    secrets = {name: getattr(base, name).get_secret_value() for name in SECRETS}
    secrets["jwt_secret"] = secrets["jwt_secret"].ljust(40, "j")
    secrets["blind_index_key"] = base.blind_index_key.get_secret_value()  # type: ignore[union-attr]
    secrets["audit_key"] = base.audit_key.get_secret_value()  # type: ignore[union-attr]
    values: dict[str, Any] = {
        "environment": "production",
        "database_url": f"sqlite+aiosqlite:///{db}",
        "email_backend": "smtp",
        "tls_certfile": var_dir / "api.crt",
        "tls_keyfile": var_dir / "api.key",
        **secrets,
        **overrides,
    }
    return make_settings(var_dir, **values)


def statuses(report: compliance.Report) -> dict[str, str]:
    return {c.name: c.status for c in report.controls}


async def checked(settings: Settings) -> compliance.Report:
    runtime = prepare_runtime(build_runtime(settings))
    try:
        return await compliance.run_checks(runtime)
    finally:
        await runtime.close()


def make_backup_and_drill(settings: Settings, *, days_ago: float = 0) -> None:
    made = datetime.now(UTC) - timedelta(days=days_ago)
    backups = settings.backups_path
    (backups / f"{made:%Y%m%dT%H%M%SZ}-0123abcd").mkdir(parents=True)
    with (backups / compliance.RESTORE_DRILLS).open("a") as handle:
        handle.write(json.dumps({"at": made.isoformat(), "backup": "x", "tickets": 1}) + "\n")


async def test_a_correct_production_configuration_passes(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    await make_user(runtime, Role.ADMINISTRATOR)  # enrolled in TOTP by the factory
    await make_user(runtime, Role.MANAGER)
    await make_user(runtime, Role.END_USER)
    production = production_settings(settings, tmp_path / "prod")
    await anchor_database(production)
    make_backup_and_drill(production)
    report = await checked(production)
    assert report.ok, report.to_text()
    assert all(status == "pass" for status in statuses(report).values()), report.to_text()
    assert "all controls pass" in report.to_text()


async def test_a_broken_configuration_names_each_broken_control(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    await make_user(runtime, Role.MANAGER, mfa=False)  # a manager without TOTP
    broken = production_settings(
        settings,
        tmp_path / "prod",
        tls_certfile=None,
        tls_keyfile=None,
        require_mfa_for_privileged=False,
        session_idle_timeout_seconds=3600,
        temporal_address="temporal.internal:7233",
    )
    (broken.var_dir / "secrets.json").write_text("{}")  # development keys copied over
    make_backup_and_drill(broken, days_ago=120)
    report = await checked(broken)
    assert not report.ok
    failing = set(report.failing())
    assert failing == {
        "tls",
        "temporal_tls",
        "mfa_required",
        "secrets",
        "session_policy",
        "mfa_enrolment",
        "audit_chain",  # never anchored
        "backup_age",
        "restore_drill",
    }, report.to_text()
    text = report.to_text()
    assert "1 active managers/administrators without TOTP" in text
    assert "FAILING: " in text
    assert json.loads(report.to_json())["ok"] is False


async def test_development_defaults_warn_rather_than_fail(runtime: Runtime) -> None:
    report = await compliance.run_checks(runtime)
    found = statuses(report)
    assert found["tls"] == "warn" and found["email_backend"] == "warn"
    assert found["secrets"] == "warn"


def test_the_cli_exits_non_zero_on_a_failure(settings: Settings, monkeypatch: Any) -> None:
    from helpdesk import cli

    for key, value in {
        "HELPDESK_ENVIRONMENT": "test",
        "HELPDESK_VAR_DIR": str(settings.var_dir),
        "HELPDESK_DATABASE_URL": settings.database_url,
    }.items():
        monkeypatch.setenv(key, value)
    from helpdesk.settings import get_settings

    get_settings.cache_clear()
    try:
        code = cli.run(["compliance", "check", "--json"])
    finally:
        get_settings.cache_clear()
    assert code == 1  # never anchored, no backup: failing controls


async def test_the_daily_schedule_mails_the_administrators(
    runtime: Runtime, temporal_client: Any
) -> None:
    from workers.worker import run_worker_in_background

    admin = await make_user(runtime, Role.ADMINISTRATOR)
    runtime.temporal = temporal_client
    async with run_worker_in_background(runtime):
        for _ in range(300):
            mails = [m for m in runtime.email.messages() if "compliance" in m["subject"]]
            if mails:
                break
            await asyncio.sleep(0.1)
    assert [m["to"] for m in mails] == [admin.email]
    assert "Failing controls:" in mails[0]["body"]
    from helpdesk import metrics

    assert metrics.COMPLIANCE_RUN._value.get() > 0  # exported where the schedule ran


async def test_a_self_check_before_the_migrations_is_one_benign_failure(
    tmp_path: Path, caplog: Any
) -> None:
    """A worker started before `helpdesk migrate` runs the schedule's first check: it fails
    as one benign, retried error and one log line, not a traceback."""
    from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
    from temporalio.testing import ActivityEnvironment

    from activities.compliance import ComplianceActivities

    runtime = build_runtime(make_settings(tmp_path / "empty"))
    try:
        with caplog.at_level("WARNING", logger="helpdesk.activities.compliance"):
            with pytest.raises(ApplicationError) as refused:
                await ActivityEnvironment().run(ComplianceActivities(runtime).compliance_report)
    finally:
        await runtime.close()
    assert refused.value.category is ApplicationErrorCategory.BENIGN
    assert refused.value.type == "ComplianceUnavailable"
    lines = [r for r in caplog.records if r.name == "helpdesk.activities.compliance"]
    assert len(lines) == 1 and lines[0].exc_info is None
