"""The HIPAA self-check: each technical safeguard as a control with a status.

`helpdesk compliance check` prints the report (text, or `--json`) and exits 1 when any
control fails; the daily `Compliance` schedule (`workflows.compliance`) runs the same report,
mails it to the administrators and exports it as metrics. Every line is PHI-free: control
names, counts, ages and setting names, never a person or a ticket.

Controls (45 CFR 164.312 and the README's HIPAA section): transmission security (TLS to
clients, to PostgreSQL and to Temporal), MFA required and enrolled by every manager and
administrator, audit retention >= 6 years, no development secrets or mail backends, the audit
chain intact and its anchor fresh, the last backup and the last restore drill recent enough,
data keys all under the current KEK, no active account idle past a limit, and the session
policy (idle logoff, absolute lifetime, access token life).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk import metrics
from helpdesk.audit_anchor import anchor_store, verify_against_anchor
from helpdesk.backup.retention import backup_time, list_backups
from helpdesk.runtime import Runtime
from helpdesk.settings import Settings
from helpdesk.settings_features import EmailBackendName
from helpdesk.settings_platform import Environment
from helpdesk.settings_security import MIN_AUDIT_RETENTION_YEARS
from models.enums import Role
from models.keys import DataKey
from models.user import AuthSession, User

Status = Literal["pass", "warn", "fail"]
RESTORE_DRILLS = "restore-drills.log"  # beside the backups (helpdesk.backup.commands)


@dataclass(frozen=True, slots=True)
class Control:
    name: str
    status: Status
    detail: str


@dataclass(slots=True)
class Report:
    generated_at: datetime
    environment: str
    controls: list[Control] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.controls)

    def failing(self) -> list[str]:
        return [c.name for c in self.controls if c.status == "fail"]

    def to_json(self) -> str:
        return json.dumps(
            {
                "generated_at": self.generated_at.isoformat(),
                "environment": self.environment,
                "ok": self.ok,
                "controls": [asdict(c) for c in self.controls],
            },
            indent=2,
        )

    def to_text(self) -> str:
        width = max((len(c.name) for c in self.controls), default=0)
        lines = [f"HIPAA self-check ({self.environment}, {self.generated_at:%Y-%m-%d %H:%M} UTC)"]
        for c in self.controls:
            lines.append(f"  {c.status.upper():4}  {c.name:<{width}}  {c.detail}")
        verdict = "all controls pass" if self.ok else "FAILING: " + ", ".join(self.failing())
        lines.append(verdict)
        return "\n".join(lines)


def _strict(settings: Settings) -> bool:
    return settings.environment is Environment.PRODUCTION


def _status(settings: Settings, good: bool) -> Status:
    if good:
        return "pass"
    return "fail" if _strict(settings) else "warn"


def settings_controls(settings: Settings) -> list[Control]:
    """The controls the configuration alone decides (pure: no I/O)."""
    out: list[Control] = []
    proxy_tls = settings.public_base_url.startswith("https://") and bool(settings.trusted_proxies)
    tls = settings.tls_certfile is not None or proxy_tls
    out.append(
        Control(
            "tls",
            _status(settings, tls),
            "TLS 1.3 on the API"
            if settings.tls_certfile is not None
            else "TLS ends at a trusted proxy (https public URL)"
            if proxy_tls
            else "no TLS: set HELPDESK_TLS_CERTFILE/KEYFILE or an https public URL behind a "
            "trusted proxy",
        )
    )
    db_tls = settings.database_url.startswith("sqlite") or any(
        token in settings.database_url for token in ("ssl=require", "sslmode=require", "ssl=verify")
    )
    out.append(
        Control(
            "database_tls",
            _status(settings, db_tls),
            "SQLite file (no network)"
            if settings.database_url.startswith("sqlite")
            else ("TLS required" if db_tls else "PostgreSQL URL without ssl=require"),
        )
    )
    loopback = settings.temporal_address.split(":")[0] in ("127.0.0.1", "localhost")
    temporal_tls = settings.temporal_tls or settings.temporal_api_key is not None or loopback
    out.append(
        Control(
            "temporal_tls",
            _status(settings, temporal_tls),
            "TLS to Temporal"
            if settings.temporal_tls
            else ("Temporal on loopback" if loopback else "Temporal reached without TLS"),
        )
    )
    out.append(
        Control(
            "mfa_required",
            "pass" if settings.require_mfa_for_privileged else "fail",
            "TOTP required for managers and administrators"
            if settings.require_mfa_for_privileged
            else "HELPDESK_REQUIRE_MFA_FOR_PRIVILEGED is off",
        )
    )
    years = settings.audit_retention_years
    out.append(
        Control(
            "audit_retention",
            "pass" if years >= MIN_AUDIT_RETENTION_YEARS else "fail",
            f"{years} years (at least {MIN_AUDIT_RETENTION_YEARS})",
        )
    )
    # Production refuses to start without its secrets; a development secrets file beside
    # it means someone copied var/ over, keys and all.
    dev_secrets = (settings.var_dir / "secrets.json").exists()
    if not _strict(settings):
        secrets = Control("secrets", "warn", f"{settings.environment}: generated secrets")
    elif dev_secrets:
        secrets = Control("secrets", "fail", "a development secrets file is present")
    else:
        secrets = Control("secrets", "pass", "secrets come from the environment")
    out.append(secrets)
    dev_mail = settings.email_backend in (EmailBackendName.CONSOLE, EmailBackendName.FILE)
    out.append(
        Control(
            "email_backend",
            _status(settings, not dev_mail),
            f"{settings.email_backend} backend"
            + (" (development only: keeps addresses)" if dev_mail else ""),
        )
    )
    policy = (
        settings.session_idle_timeout_seconds <= 900
        and settings.session_absolute_lifetime_seconds <= 12 * 3600
        and settings.access_token_ttl_seconds <= 900
    )
    out.append(
        Control(
            "session_policy",
            "pass" if policy else "fail",
            f"idle logoff {settings.session_idle_timeout_seconds // 60} min, lifetime "
            f"{settings.session_absolute_lifetime_seconds // 3600} h, access token "
            f"{settings.access_token_ttl_seconds // 60} min (limits 15 min, 12 h, 15 min)",
        )
    )
    return out


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    hours = (now - then).total_seconds() / 3600
    return f"{hours:.1f} h ago" if hours < 48 else f"{hours / 24:.0f} days ago"


def latest_restore_drill(backups: Path) -> datetime | None:
    try:
        lines = (backups / RESTORE_DRILLS).read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return datetime.fromisoformat(json.loads(line)["at"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def backup_controls(settings: Settings, now: datetime) -> list[Control]:
    """The last backup's and the last restore drill's age, from the backup directory."""
    made = [backup_time(p) for p in list_backups(settings.backups_path)]
    newest = max((t for t in made if t is not None), default=None)
    backup_limit = timedelta(hours=settings.compliance_backup_max_age_hours)
    drill = latest_restore_drill(settings.backups_path)
    drill_limit = timedelta(days=settings.compliance_restore_drill_max_age_days)
    return [
        Control(
            "backup_age",
            "pass" if newest is not None and now - newest <= backup_limit else "fail",
            f"last backup {_age(now, newest)} (limit {backup_limit.total_seconds() / 3600:.0f} h)",
        ),
        Control(
            "restore_drill",
            "pass" if drill is not None and now - drill <= drill_limit else "fail",
            f"last restore drill {_age(now, drill)} (limit {drill_limit.days} days)",
        ),
    ]


async def database_controls(
    session: AsyncSession, settings: Settings, now: datetime, current_kek: str
) -> list[Control]:
    """MFA enrolment, idle accounts and key rotation, from the database."""
    privileged = (Role.MANAGER.value, Role.ADMINISTRATOR.value)
    unenrolled = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role.in_(privileged), User.is_active.is_(True), User.mfa_enabled.is_(False))
    )
    cutoff = now - timedelta(days=settings.compliance_inactive_account_days)
    last_seen = (
        select(AuthSession.user_id, func.max(AuthSession.last_seen_at).label("seen"))
        .group_by(AuthSession.user_id)
        .subquery()
    )
    idle = await session.scalar(
        select(func.count())
        .select_from(User)
        .outerjoin(last_seen, last_seen.c.user_id == User.id)
        .where(
            User.is_active.is_(True),
            User.created_at < cutoff,
            (last_seen.c.seen.is_(None)) | (last_seen.c.seen < cutoff),
        )
    )
    rows = await session.execute(select(DataKey.kek_id, func.count()).group_by(DataKey.kek_id))
    keys = {kek: count for kek, count in rows}
    older = sum(count for kek, count in keys.items() if kek != current_kek)
    return [
        Control(
            "mfa_enrolment",
            "pass" if not unenrolled else "fail",
            "every active manager and administrator has TOTP"
            if not unenrolled
            else f"{unenrolled} active managers/administrators without TOTP",
        ),
        Control(
            "inactive_accounts",
            "pass" if not idle else "warn",
            f"{idle or 0} active accounts unused for over "
            f"{settings.compliance_inactive_account_days} days",
        ),
        Control(
            "key_rotation",
            "pass" if not older else "warn",
            f"{sum(keys.values())} data keys; {older} under older key-encryption keys"
            + (" (run `helpdesk keys rewrap`)" if older else ""),
        ),
    ]


async def audit_control(runtime: Runtime, settings: Settings, now: datetime) -> Control:
    """The audit chain walked and held against its latest anchor."""
    async with runtime.database.read() as session:
        report = await verify_against_anchor(
            runtime.audit,
            settings.secret_bytes("audit_key"),
            session,
            anchor_store(settings),
            max_age=timedelta(minutes=settings.audit_anchor_max_age_minutes),
            now=now,
        )
    status: Status = "fail" if not report.ok else ("warn" if report.stale else "pass")
    return Control("audit_chain", status, report.message.splitlines()[0])


async def run_checks(runtime: Runtime, now: datetime | None = None) -> Report:
    """The whole report for the runtime's settings and database."""
    settings = runtime.settings
    now = now or datetime.now(UTC)
    report = Report(generated_at=now, environment=str(settings.environment))
    report.controls.extend(settings_controls(settings))
    async with runtime.database.read() as session:
        report.controls.extend(
            await database_controls(session, settings, now, runtime.keys.keyring.current_kek_id)
        )
    report.controls.append(await audit_control(runtime, settings, now))
    report.controls.extend(backup_controls(settings, now))
    return report


def export_metrics(report: Report) -> None:
    """The report as gauges: 0 pass, 1 warn, 2 fail per control, and when it ran."""
    for control in report.controls:
        metrics.COMPLIANCE.labels(control=control.name).set(
            {"pass": 0, "warn": 1, "fail": 2}[control.status]
        )
    metrics.COMPLIANCE_RUN.set(report.generated_at.timestamp())
