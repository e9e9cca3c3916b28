"""Settings that guard the data: secrets and key-encryption keys, tokens and sessions,
audit retention and anchors, backups; and the development secrets generated once into
``var/secrets.json``. Groups of `helpdesk.settings.Settings` (never used alone)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import NoDecode

MIN_AUDIT_RETENTION_YEARS = 6

# Names of the secrets that development mode generates into var/secrets.json.
GENERATED_SECRETS = (
    "jwt_secret",
    "kek",
    "blind_index_key",
    "audit_key",
    "payload_codec_key",
    "command_key",
)


class SecretSettings(BaseModel):
    """Keys: token signing, key encryption (local or Key Vault), blind indexes, audit chain,
    Temporal payloads and workflow commands."""

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


class SessionSettings(BaseModel):
    """Access tokens, sessions, one-time links, login throttling, password hashing."""

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


class AuditSettings(BaseModel):
    """How long the audit log is kept, and where its chain is anchored."""

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


class BackupSettings(BaseModel):
    """Backups: their key, where they go, how long they are kept."""

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


def decode_key(value: str, name: str) -> bytes:
    """The bytes of a base64 key setting; a ValueError naming its variable otherwise."""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ValueError(f"HELPDESK_{name.upper()} is not valid base64") from exc


def load_or_generate_dev_secrets(var_dir: Path) -> dict[str, str]:
    """Development keys, generated once (0600) and reused by every process."""
    path = var_dir / "secrets.json"
    var_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
    else:
        data = {}
    changed = False
    for name in (*GENERATED_SECRETS, "backup_key"):
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
