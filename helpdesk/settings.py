"""One typed settings object for every process (api, worker, CLI, tests).

Values come from the environment (prefix ``HELPDESK_``) or a ``.env`` file. Outside
development a missing secret refuses to start; in development the secrets are generated
once into ``var/secrets.json`` (mode 0600) so that the api and worker processes share them.
The settings are declared in groups (`settings_platform`, `settings_security`,
`settings_features`); this module puts them together and checks them as a whole.
"""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from helpdesk.settings_features import (
    AnalyticsSettings,
    AttachmentSettings,
    CommentSettings,
    CommunicationSettings,
    ComplianceSettings,
    EmailBackendName,
    EmailSettings,
    PushSettings,
    SlaSettings,
    TicketCommandSettings,
    TicketSettings,
)
from helpdesk.settings_platform import (
    DatabaseSettings,
    Environment,
    NetworkSettings,
    ObservabilitySettings,
    ProcessSettings,
    TemporalSettings,
)
from helpdesk.settings_security import (
    GENERATED_SECRETS,
    MIN_AUDIT_RETENTION_YEARS,
    AuditSettings,
    BackupSettings,
    SecretSettings,
    SessionSettings,
    decode_key,
    load_or_generate_dev_secrets,
)


class ConfigurationError(RuntimeError):
    """Raised when the settings cannot be used safely; the process refuses to start."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


class Settings(
    # Pydantic orders the fields from the last group to the first (then the class's own):
    # listed in reverse, they keep the order of the README's table.
    BackupSettings,
    CommentSettings,
    ObservabilitySettings,
    ComplianceSettings,
    AttachmentSettings,
    CommunicationSettings,
    SlaSettings,
    TicketCommandSettings,
    PushSettings,
    EmailSettings,
    AnalyticsSettings,
    TicketSettings,
    AuditSettings,
    SessionSettings,
    SecretSettings,
    TemporalSettings,
    DatabaseSettings,
    NetworkSettings,
    ProcessSettings,
    BaseSettings,
):
    """Every setting of the help desk, with its default and meaning (see README)."""

    model_config = SettingsConfigDict(
        env_prefix="HELPDESK_", env_file=".env", extra="ignore", validate_default=True
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
        missing = [name for name in GENERATED_SECRETS if getattr(self, name) is None]
        if self.kek_provider == "azure-keyvault" and self.environment is Environment.PRODUCTION:
            # The KEK is in the vault; HELPDESK_KEK, when set, only unwraps older data keys.
            missing = [name for name in missing if name != "kek"]
        if missing:
            if self.environment is Environment.PRODUCTION:
                raise ValueError(
                    "missing secrets outside development: "
                    + ", ".join(f"HELPDESK_{name.upper()}" for name in missing)
                )
            generated = load_or_generate_dev_secrets(self.var_dir)
            for name in missing:
                setattr(self, name, SecretStr(generated[name]))
            if self.backup_key is None:
                self.backup_key = SecretStr(generated["backup_key"])
        for name in ("kek", "payload_codec_key", "backup_key"):
            value = getattr(self, name)
            if value is None:
                continue  # backup_key in production: only the backup commands need it
            raw = decode_key(value.get_secret_value(), name)
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
            return decode_key(value.get_secret_value(), name)
        return value.get_secret_value().encode()

    def key_encryption_keys(self) -> dict[str, bytes]:
        """Every KEK able to unwrap data keys, by id; the current one included."""
        keys = {self.kek_id: self.secret_bytes("kek")} if self.kek is not None else {}
        for item in self.previous_keks:
            key_id, _, encoded = item.partition(":")
            keys[key_id] = decode_key(encoded, "previous_keks")
        return keys


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
