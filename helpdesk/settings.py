"""One typed settings object for every process (api, worker, CLI, tests).

Values come from the environment (prefix ``HELPDESK_``) or a ``.env`` file. Outside
development a missing secret refuses to start; in development the secrets are generated
once into ``var/secrets.json`` (mode 0600) so that the api and worker processes share them.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_AUDIT_RETENTION_YEARS = 6

# Names of the secrets that development mode generates into var/secrets.json.
_GENERATED_SECRETS = (
    "jwt_secret",
    "kek",
    "blind_index_key",
    "audit_key",
    "payload_codec_key",
    "command_key",
)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class EmailBackendName(StrEnum):
    CONSOLE = "console"
    FILE = "file"
    SMTP = "smtp"
    SENDGRID = "sendgrid"


class ConfigurationError(RuntimeError):
    """Raised when the settings cannot be used safely; the process refuses to start."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the help desk, with its default and meaning (see README)."""

    model_config = SettingsConfigDict(
        env_prefix="HELPDESK_", env_file=".env", extra="ignore", validate_default=True
    )

    environment: Environment = Field(
        Environment.DEVELOPMENT, description="development, test or production"
    )
    var_dir: Path = Field(Path("var"), description="Directory for local state")

    # --- network ---------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Address the API binds")
    api_port: int = Field(8000, description="Port the API binds")
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base of the links in emails (never the Host header): a portal's URL, or "
        "the API's own, which then serves /verify-email and /reset-password",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (comma-separated)"
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy networks whose X-Forwarded-For is trusted (comma-separated CIDRs)",
    )
    admin_ip_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
        ],
        description="Networks allowed to call administrative routes (comma-separated CIDRs)",
    )
    tls_certfile: Path | None = Field(None, description="TLS certificate; enables TLS 1.3 only")
    tls_keyfile: Path | None = Field(None, description="TLS private key")

    # --- database --------------------------------------------------------------------
    database_url: str = Field("", description="SQLAlchemy async URL; default SQLite under var/")
    database_echo: bool = Field(False, description="Log SQL statements (never in production)")
    database_busy_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Wait this long for the SQLite writer or a pooled connection, then 503",
    )

    # --- temporal --------------------------------------------------------------------
    temporal_address: str = Field("127.0.0.1:7233", description="Temporal frontend host:port")
    temporal_namespace: str = Field("default", description="Temporal namespace")
    temporal_task_queue: str = Field("helpdesk-tickets", description="Task queue of the worker")
    temporal_ui_port: int = Field(8233, description="Temporal UI port of the dev server")
    temporal_ui_codec: bool = Field(
        False,
        description="Point the dev server's Temporal UI at the API's codec endpoint (the "
        "browser must then hold a codec token); off: the UI shows the plaintext summaries "
        "and no codec error",
    )
    temporal_dev_server: bool = Field(
        True, description="`helpdesk dev` starts the Temporal dev server itself"
    )
    temporal_tls: bool = Field(False, description="Use TLS to reach Temporal")
    temporal_tls_client_cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for mTLS to Temporal, e.g. Temporal Cloud"
    )
    temporal_tls_client_key_file: Path | None = Field(
        None, description="Private key (PEM) of the Temporal client certificate"
    )
    temporal_tls_server_ca_file: Path | None = Field(
        None, description="CA bundle trusted for Temporal's certificate (default: system CAs)"
    )
    temporal_api_key: SecretStr | None = Field(
        None, description="Temporal Cloud API key (instead of mTLS; implies TLS)"
    )
    run_worker_in_api: bool = Field(
        True, description="Host the Temporal worker inside the API process"
    )
    workflow_task_pollers: int = Field(20, description="Workflow task pollers of the worker")
    # An evicted ticket replays its history before each update (about 40 ms more per
    # update measured here); each cached ticket workflow holds about 140 KB.
    workflow_cache_size: int = Field(
        3000,
        ge=0,
        description="Ticket workflows the worker keeps in memory (about 140 KB each); "
        "a change to one not kept replays its history first",
    )

    # --- secrets ---------------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(None, description="HS256 key for access tokens")
    kek: SecretStr | None = Field(
        None,
        description="Key-encryption key, base64 of 32 bytes (wraps per-record data keys); "
        "with azure-keyvault, optional: it only opens data keys it wrapped before",
    )
    kek_id: str = Field("kek-1", description="Identifier of the current key-encryption key")
    previous_keks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Retired KEKs still able to unwrap, as id:base64 (comma-separated)",
    )
    kek_provider: str = Field(
        "local",
        pattern="^(local|azure-keyvault)$",
        description="Where the key-encryption key lives: local (HELPDESK_KEK) or "
        "azure-keyvault (an RSA key that never leaves the vault)",
    )
    azure_key_vault_url: str | None = Field(
        None, description="Key Vault URL (https://<vault>.vault.azure.net) of azure-keyvault"
    )
    azure_key_name: str = Field(
        "helpdesk-kek", description="Name of the Key Vault key that wraps data keys"
    )
    azure_client_id: str | None = Field(
        None, description="Client id of the user-assigned managed identity (default: system)"
    )
    azure_key_local_wrap: bool = Field(
        True,
        description="Wrap new data keys in-process with the Key Vault key's public half "
        "(false: one wrapKey call per new record)",
    )
    azure_key_cache_seconds: float = Field(
        300.0, ge=0, description="How long an unwrapped data key is kept in memory (0: never)"
    )
    azure_key_cache_size: int = Field(
        10_000, ge=0, description="Most unwrapped data keys kept in memory per process"
    )
    azure_key_refresh_seconds: float = Field(
        300.0, gt=0, description="How often the current key version is re-read (rotation)"
    )
    azure_key_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline of one Key Vault call (then 503)"
    )
    blind_index_key: SecretStr | None = Field(None, description="HMAC key for blind indexes")
    audit_key: SecretStr | None = Field(None, description="HMAC key of the audit hash chain")
    payload_codec_key: SecretStr | None = Field(
        None, description="AES-256 key (base64) encrypting Temporal payloads"
    )
    command_key: SecretStr | None = Field(
        None,
        description="HMAC key signing every workflow command the API sends; only API and "
        "worker hold it (never the codec endpoint). Required outside development",
    )

    # --- tokens and sessions ---------------------------------------------------------
    jwt_issuer: str = Field("helpdesk", description="`iss` of access tokens")
    jwt_audience: str = Field("helpdesk-api", description="`aud` of access tokens")
    access_token_ttl_seconds: int = Field(600, ge=60, le=900, description="Access JWT life")
    refresh_token_ttl_seconds: int = Field(8 * 3600, description="Refresh token life")
    session_idle_timeout_seconds: int = Field(900, ge=60, description="Idle logoff")
    session_absolute_lifetime_seconds: int = Field(12 * 3600, description="Session hard limit")
    one_time_token_ttl_seconds: int = Field(
        1800, ge=300, le=1800, description="Email verification / password reset link life"
    )
    require_mfa_for_privileged: bool = Field(
        True, description="MANAGER and ADMINISTRATOR need TOTP for privileged routes"
    )
    login_max_failures: int = Field(5, description="Failures before an account is locked")
    login_lockout_seconds: int = Field(300, description="First lockout; doubles each time")
    rate_limit_per_minute: int = Field(
        30,
        description="Login/registration/reset requests per IP per minute (all replicas "
        "together when HELPDESK_REDIS_URL is set)",
    )
    argon2_time_cost: int = Field(3, description="argon2id iterations")
    argon2_memory_cost: int = Field(65536, description="argon2id memory (KiB)")

    # --- audit -----------------------------------------------------------------------
    audit_retention_years: int = Field(
        MIN_AUDIT_RETENTION_YEARS, description="Audit retention (HIPAA: six years at least)"
    )
    audit_anchor_file: Path | None = Field(
        None,
        description="Append-only file of the audit chain's sealed heads (default: "
        "var/audit-anchors.log); keep it off the database's disk",
    )
    audit_anchor_interval_minutes: float = Field(
        5.0, gt=0, description="How often the worker's Temporal schedule anchors the audit head"
    )
    audit_anchor_max_age_minutes: float = Field(
        60.0, gt=0, description="`helpdesk audit verify` warns when the latest anchor is older"
    )

    # --- tickets ---------------------------------------------------------------------
    auto_assign_on_create: bool = Field(True, description="Assign new tickets automatically")
    max_page_size: int = Field(100, description="Largest page a list returns")

    # --- analytics -------------------------------------------------------------------
    analytics_min_cell_size: int = Field(
        5, ge=1, description="Analytics figures of fewer tickets are suppressed (k)"
    )
    analytics_exports_per_hour: int = Field(
        10, ge=1, description="De-identified exports a user may start per hour"
    )
    analytics_export_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Tags an export may show (comma-separated; tags are free text)",
    )
    analytics_export_categories: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Category ids an export may show (comma-separated)",
    )

    csat_survey_delay_seconds: int = Field(
        0, ge=0, description="Delay between a resolution and its satisfaction survey email"
    )
    csat_survey_life_hours: int = Field(
        168, ge=1, le=24 * 90, description="How long a satisfaction survey link answers"
    )

    # --- email -----------------------------------------------------------------------
    email_backend: EmailBackendName = Field(
        EmailBackendName.CONSOLE, description="Mail backend (console and file: not in production)"
    )
    email_from: str = Field("helpdesk@localhost", description="Sender address")
    email_file_path: Path | None = Field(None, description="Mailbox file of the file backend")
    smtp_host: str = Field("127.0.0.1", description="SMTP host")
    smtp_port: int = Field(587, description="SMTP port")
    smtp_username: str | None = Field(None, description="SMTP user")
    smtp_password: SecretStr | None = Field(None, description="SMTP password")
    smtp_starttls: bool = Field(True, description="Require STARTTLS with certificate checks")
    sendgrid_api_key: SecretStr | None = Field(None, description="SendGrid API key")
    sendgrid_host: str = Field("https://api.sendgrid.com", description="SendGrid API host")

    # --- push ------------------------------------------------------------------------
    redis_url: str | None = Field(
        None, description="Redis URL: Socket.IO fan-out and the shared auth rate limit"
    )

    # --- ticket commands and workflows: added by the tickets area ----------------------
    ticket_create_max_in_flight: int = Field(
        32, gt=0, description="Ticket creations in flight per process; past it 503 at once"
    )
    ticket_command_max_in_flight: int = Field(
        256, gt=0, description="Ticket updates in flight per process; past it 503 at once"
    )
    ticket_command_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest a ticket creation or command takes, retries included (then 503)",
    )
    ticket_command_retries: int = Field(
        5, ge=1, description="Attempts of a command on UNAVAILABLE / RESOURCE_EXHAUSTED"
    )
    ticket_query_timeout_seconds: float = Field(
        2.0, gt=0, description="Longest wait for a ticket's live state on GET"
    )
    ticket_continue_as_new_after_events: int | None = Field(
        None, description="Force continue-as-new at this history length (default: server hint)"
    )
    ticket_reconcile_interval_seconds: float = Field(
        60.0, gt=0, description="How often the worker starts missing ticket workflows"
    )
    ticket_reconcile_window_hours: float = Field(
        72.0, gt=0, description="Tickets created this recently are checked by the reconciler"
    )

    # --- SLA clocks, escalation and automations: added by the SLA area --------------------
    sla_seconds_per_minute: float = Field(
        60.0, gt=0, description="Real seconds one SLA policy minute lasts (tests shrink it)"
    )
    sla_auto_close_minutes: int = Field(
        7 * 24 * 60, gt=0, description="Quiet period after which a RESOLVED ticket closes itself"
    )
    sla_at_risk_percent: int = Field(
        75, gt=0, lt=100, description="Share of a target after which a ticket is at risk"
    )

    # --- communication (email, push): added by the communication area ----------------
    smtp_ca_file: Path | None = Field(
        None, description="CA bundle trusted for SMTP STARTTLS (default: the system CAs)"
    )
    smtp_timeout_seconds: float = Field(15.0, gt=0, description="SMTP connect/command timeout")
    sendgrid_timeout_seconds: float = Field(15.0, gt=0, description="SendGrid request timeout")
    push_redis_channel: str = Field(
        "helpdesk-socketio", description="Redis pub/sub channel shared by API replicas and workers"
    )
    push_session_check_seconds: float = Field(
        30.0, gt=0, description="How often live sockets re-check their login session"
    )

    # --- attachments: added by the attachments area --------------------------------
    max_upload_bytes: int = Field(
        25 * 1024 * 1024, gt=0, description="Largest attachment accepted (bytes); 413 past it"
    )
    attachment_allowed_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "application/pdf",
            "image/png",
            "image/jpeg",
            "image/gif",
            "text/plain",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ],
        description="MIME types accepted, decided by content sniffing (comma-separated)",
    )
    clamd_address: str = Field(
        "127.0.0.1:3310", description="clamd: TCP host:port, or a unix socket path (/...)"
    )
    clamd_timeout_seconds: float = Field(60.0, gt=0, description="Timeout of one clamd call")
    dev_clamd: bool = Field(
        True, description="`helpdesk dev` starts clamd on clamd_address when it is installed"
    )
    attachment_storage: str = Field(
        "local", pattern="^(local|azure)$", description="Attachment store: local or azure"
    )
    attachments_dir: Path | None = Field(
        None, description="Local attachment store (default: var/attachments)"
    )
    azure_storage_connection_string: SecretStr | None = Field(
        None, description="Azure Storage connection string of the azure attachment store"
    )
    azure_storage_container: str = Field(
        "attachments", description="Blob container of the azure attachment store"
    )

    # --- HIPAA self-check (helpdesk compliance check) ---------------------------------
    compliance_backup_max_age_hours: int = Field(
        26, gt=0, description="Self-check: the newest backup must be younger (hours)"
    )
    compliance_restore_drill_max_age_days: int = Field(
        90, gt=0, description="Self-check: the last restore drill must be younger (days)"
    )
    compliance_inactive_account_days: int = Field(
        90, gt=0, description="Self-check: active accounts unused this long are reported"
    )
    compliance_interval_hours: int = Field(
        24, gt=0, description="How often the compliance schedule runs the self-check"
    )

    # --- observability -------------------------------------------------------------------
    log_format: str | None = Field(
        None,
        pattern="^(text|json)$",
        description="Log lines: text or json (one object per line); default json in production",
    )
    metrics_enabled: bool = Field(
        True, description="Serve /metrics and time every request (false: neither)"
    )
    metrics_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="Networks that may read the API's /metrics (comma-separated CIDRs)",
    )
    metrics_port: int | None = Field(
        None, description="Port of a standalone worker's /metrics (none: not served)"
    )
    metrics_host: str = Field("127.0.0.1", description="Address a standalone worker's metrics bind")
    otel_exporter: str | None = Field(
        None,
        pattern="^(otlp|azure|console)$",
        description="Traces: otlp, azure (Application Insights) or console; none: off",
    )
    otel_endpoint: str | None = Field(None, description="OTLP/HTTP traces endpoint (otlp)")
    otel_service_name: str = Field("helpdesk", description="service.name of the traces")
    temporal_metrics_address: str | None = Field(
        None, description="host:port where the Temporal SDK serves its Prometheus metrics"
    )

    # --- comments: added by the comments area ------------------------------------------
    reopen_on_requester_reply: bool = Field(
        True, description="A requester's public reply reopens their RESOLVED ticket"
    )
    comment_max_chars: int = Field(
        20_000, gt=0, le=200_000, description="Longest comment body accepted (characters)"
    )

    # --- backups: added by the backup area ---------------------------------------------
    backup_key: SecretStr | None = Field(
        None,
        description="AES-256 key (base64) sealing backups, never a KEK; generated into "
        "`var/secrets.json` with the other development secrets; the backup commands require "
        "it in production (the API and worker do not need it)",
    )
    backup_dir: Path | None = Field(
        None, description="Where `helpdesk backup create` writes (default: var/backups)"
    )
    backup_retention_days: int = Field(
        35,
        gt=0,
        description="`helpdesk backup prune` deletes backups older than this; a deleted "
        "ticket stays readable from backups for at most this long",
    )

    @field_validator("attachment_allowed_types", mode="before")
    @classmethod
    def _attachment_types_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @property
    def effective_log_format(self) -> str:
        """`log_format`, or json in production and text elsewhere."""
        if self.log_format:
            return self.log_format
        return "json" if self.environment is Environment.PRODUCTION else "text"

    @property
    def audit_anchor_path(self) -> Path:
        """The append-only file of audit anchors."""
        return self.audit_anchor_file or self.var_dir / "audit-anchors.log"

    @property
    def attachments_path(self) -> Path:
        """Directory of the local attachment store."""
        return self.attachments_dir or self.var_dir / "attachments"

    @property
    def backups_path(self) -> Path:
        """Directory of `helpdesk backup create` (default var/backups)."""
        return self.backup_dir or self.var_dir / "backups"

    @field_validator(
        "cors_origins",
        "trusted_proxies",
        "admin_ip_allowlist",
        "metrics_allowed_networks",
        "previous_keks",
        "analytics_export_tags",
        "analytics_export_categories",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("trusted_proxies", "admin_ip_allowlist", "metrics_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("audit_retention_years")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value < MIN_AUDIT_RETENTION_YEARS:
            raise ValueError(
                f"audit retention must be at least {MIN_AUDIT_RETENTION_YEARS} years (HIPAA)"
            )
        return value

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir / 'helpdesk.db'}"
        if self.email_file_path is None:
            self.email_file_path = self.var_dir / "mail.log"
        if self.kek_provider == "azure-keyvault":
            url = self.azure_key_vault_url or ""
            if not url.startswith("https://"):
                raise ValueError(
                    "HELPDESK_AZURE_KEY_VAULT_URL (https://...) is required with "
                    "HELPDESK_KEK_PROVIDER=azure-keyvault"
                )
        missing = [name for name in _GENERATED_SECRETS if getattr(self, name) is None]
        if self.kek_provider == "azure-keyvault" and self.environment is Environment.PRODUCTION:
            # The KEK is in the vault; HELPDESK_KEK, when set, only unwraps older data keys.
            missing = [name for name in missing if name != "kek"]
        if missing:
            if self.environment is Environment.PRODUCTION:
                raise ValueError(
                    "missing secrets outside development: "
                    + ", ".join(f"HELPDESK_{name.upper()}" for name in missing)
                )
            generated = _load_or_generate_dev_secrets(self.var_dir)
            for name in missing:
                setattr(self, name, SecretStr(generated[name]))
            if self.backup_key is None:
                self.backup_key = SecretStr(generated["backup_key"])
        for name in ("kek", "payload_codec_key", "backup_key"):
            value = getattr(self, name)
            if value is None:
                continue  # backup_key in production: only the backup commands need it
            raw = _b64(value.get_secret_value(), name)
            if len(raw) != 32:
                raise ValueError(f"HELPDESK_{name.upper()} must be base64 of 32 bytes")
        if self.backup_key is not None:
            # Kept apart from the keys it protects: a backup key equal to a KEK or the codec
            # key would let whoever holds one open the other's data.
            backup = self.secret_bytes("backup_key")
            others = [*self.key_encryption_keys().values(), self.secret_bytes("payload_codec_key")]
            if backup in others:
                raise ValueError("HELPDESK_BACKUP_KEY must differ from every KEK and the codec key")
        if self.environment is Environment.PRODUCTION:
            for name in ("jwt_secret", "blind_index_key", "audit_key", "command_key"):
                if len(getattr(self, name).get_secret_value()) < 32:
                    raise ValueError(f"HELPDESK_{name.upper()} must be at least 32 characters")
        if self.environment is Environment.PRODUCTION and self.email_backend in (
            EmailBackendName.CONSOLE,
            EmailBackendName.FILE,
        ):
            # Both keep recipients' addresses in clear, and the console prints one-time
            # tokens (password reset, verification) to the process output.
            raise ValueError(
                f"HELPDESK_EMAIL_BACKEND={self.email_backend.value} is for development only "
                "(it keeps addresses in clear and prints one-time tokens); "
                "set HELPDESK_EMAIL_BACKEND=smtp or sendgrid in production"
            )
        return self

    # --- derived ---------------------------------------------------------------------
    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def secret_bytes(self, name: str) -> bytes:
        """The raw bytes of a key setting (base64-decoded for the AES keys)."""
        value: SecretStr = getattr(self, name)
        if name in ("kek", "payload_codec_key", "backup_key"):
            return _b64(value.get_secret_value(), name)
        return value.get_secret_value().encode()

    def key_encryption_keys(self) -> dict[str, bytes]:
        """Every KEK able to unwrap data keys, by id; the current one included."""
        keys = {self.kek_id: self.secret_bytes("kek")} if self.kek is not None else {}
        for item in self.previous_keks:
            key_id, _, encoded = item.partition(":")
            keys[key_id] = _b64(encoded, "previous_keks")
        return keys


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ValueError(f"HELPDESK_{name.upper()} is not valid base64") from exc


def _load_or_generate_dev_secrets(var_dir: Path) -> dict[str, str]:
    """Development keys, generated once (0600) and reused by every process."""
    path = var_dir / "secrets.json"
    var_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
    else:
        data = {}
    changed = False
    for name in (*_GENERATED_SECRETS, "backup_key"):
        if name not in data:
            if name in ("kek", "payload_codec_key", "backup_key"):
                data[name] = base64.b64encode(secrets.token_bytes(32)).decode()
            else:
                data[name] = secrets.token_urlsafe(48)
            changed = True
    if changed:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    os.chmod(path, 0o600)
    return data


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
