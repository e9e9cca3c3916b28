"""Settings refuse what is unsafe (HIPAA retention, missing or weak secrets) and generate
development secrets once, privately, for every process to share."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from helpdesk.settings import Settings
from helpdesk.settings_platform import Environment
from tests.conftest import make_settings

KEY32 = base64.b64encode(b"k" * 32).decode()
PRODUCTION_SECRETS: dict[str, Any] = {
    "jwt_secret": "j" * 40,
    "kek": KEY32,
    "blind_index_key": "b" * 40,
    "audit_key": "a" * 40,
    "payload_codec_key": base64.b64encode(b"c" * 32).decode(),
    "command_key": "m" * 40,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what each test sets: no inherited HELPDESK_* variable, no .env file."""
    for name in list(os.environ):
        if name.startswith("HELPDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_five_year_audit_retention_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 6 years"):
        Settings(var_dir=tmp_path, audit_retention_years=5)


def test_five_year_retention_from_the_environment_refuses_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELPDESK_AUDIT_RETENTION_YEARS", "5")
    monkeypatch.setenv("HELPDESK_VAR_DIR", str(tmp_path))
    with pytest.raises(ValidationError, match="audit_retention_years"):
        Settings()


def test_six_years_or_more_is_accepted(tmp_path: Path) -> None:
    assert Settings(var_dir=tmp_path, audit_retention_years=7).audit_retention_years == 7


def test_production_without_secrets_refuses_and_names_them(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(environment=Environment.PRODUCTION, var_dir=tmp_path)
    message = str(caught.value)
    for name in PRODUCTION_SECRETS:
        assert f"HELPDESK_{name.upper()}" in message
    # Production never falls back to generated keys.
    assert not (tmp_path / "secrets.json").exists()


def test_production_with_one_secret_missing_refuses(tmp_path: Path) -> None:
    partial = {k: v for k, v in PRODUCTION_SECRETS.items() if k != "audit_key"}
    with pytest.raises(ValidationError, match="HELPDESK_AUDIT_KEY"):
        Settings(environment=Environment.PRODUCTION, var_dir=tmp_path, **partial)


def test_production_refuses_a_short_signing_key(tmp_path: Path) -> None:
    weak = {**PRODUCTION_SECRETS, "jwt_secret": "short"}
    with pytest.raises(ValidationError, match="HELPDESK_JWT_SECRET must be at least 32"):
        Settings(environment=Environment.PRODUCTION, var_dir=tmp_path, **weak)


def test_production_refuses_a_missing_or_short_command_key(tmp_path: Path) -> None:
    """The key that signs workflow commands (helpdesk.command_auth) has no default."""
    missing = {k: v for k, v in PRODUCTION_SECRETS.items() if k != "command_key"}
    with pytest.raises(ValidationError, match="HELPDESK_COMMAND_KEY"):
        Settings(environment=Environment.PRODUCTION, var_dir=tmp_path, **missing)
    short = {**PRODUCTION_SECRETS, "command_key": "short"}
    with pytest.raises(ValidationError, match="HELPDESK_COMMAND_KEY must be at least 32"):
        Settings(environment=Environment.PRODUCTION, var_dir=tmp_path, **short)


def test_production_with_every_secret_starts(tmp_path: Path) -> None:
    settings = Settings(
        environment=Environment.PRODUCTION,
        var_dir=tmp_path,
        email_backend="smtp",
        **PRODUCTION_SECRETS,
    )
    assert settings.secret_bytes("kek") == b"k" * 32
    assert not (tmp_path / "secrets.json").exists()


def test_development_generates_private_secrets_once_and_reuses_them(tmp_path: Path) -> None:
    first = Settings(environment=Environment.DEVELOPMENT, var_dir=tmp_path)
    path = tmp_path / "secrets.json"
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(path.read_text())
    assert set(stored) >= set(PRODUCTION_SECRETS)
    assert len(first.secret_bytes("kek")) == 32
    assert len(first.secret_bytes("payload_codec_key")) == 32

    # A second process (the worker, the CLI) gets the very same keys.
    second = Settings(environment=Environment.DEVELOPMENT, var_dir=tmp_path)
    for name in PRODUCTION_SECRETS:
        assert second.secret_bytes(name) == first.secret_bytes(name)
    assert json.loads(path.read_text()) == stored


def test_loose_permissions_on_the_secrets_file_are_tightened(tmp_path: Path) -> None:
    Settings(var_dir=tmp_path)
    path = tmp_path / "secrets.json"
    path.chmod(0o644)
    Settings(var_dir=tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_explicit_secret_wins_over_the_generated_one(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, kek=KEY32)
    assert settings.secret_bytes("kek") == b"k" * 32


@pytest.mark.parametrize("length", [16, 31, 33, 64])
def test_kek_must_be_32_bytes(tmp_path: Path, length: int) -> None:
    with pytest.raises(ValidationError, match="HELPDESK_KEK must be base64 of 32 bytes"):
        Settings(var_dir=tmp_path, kek=base64.b64encode(b"x" * length).decode())


def test_kek_must_be_base64(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="HELPDESK_KEK is not valid base64"):
        Settings(var_dir=tmp_path, kek="not base64 at all!")


def test_payload_codec_key_must_be_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="HELPDESK_PAYLOAD_CODEC_KEY must be base64"):
        Settings(var_dir=tmp_path, payload_codec_key=base64.b64encode(b"x" * 8).decode())


def test_lists_come_comma_separated_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELPDESK_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("HELPDESK_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("HELPDESK_TRUSTED_PROXIES", "10.1.0.0/16")
    settings = Settings()
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.trusted_proxies == ["10.1.0.0/16"]


def test_a_malformed_network_refuses(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(var_dir=tmp_path, admin_ip_allowlist=["10.0.0.0/33"])


def test_default_database_lives_under_var(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'helpdesk.db'}"
    assert settings.is_sqlite


# --- the README's configuration table cannot go stale --------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _settings_table_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "settings_table", ROOT / "scripts" / "settings_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"HELPDESK_{name.upper()}"
        for name in Settings.model_fields
        if f"| `HELPDESK_{name.upper()}` |" not in readme
    ]
    assert missing == [], (
        f"README.md lacks {missing}: run .venv/bin/python scripts/settings_table.py --write"
    )


def test_readme_table_matches_the_code() -> None:
    module = _settings_table_module()
    readme = (ROOT / "README.md").read_text()
    assert module.replace_in(readme, module.table()) == readme, (
        "README.md's settings table is stale: "
        "run .venv/bin/python scripts/settings_table.py --write"
    )


def test_the_worker_cache_follows_the_setting(tmp_path: Path) -> None:
    """HELPDESK_WORKFLOW_CACHE_SIZE sizes the worker's workflow cache (default 3000, for a
    help desk's open tickets; the SDK's own default is 1000)."""
    from workers.worker import worker_tuning

    assert Settings(var_dir=tmp_path).workflow_cache_size == 3000
    tuned = worker_tuning(make_settings(tmp_path, workflow_cache_size=250))
    assert tuned["max_cached_workflows"] == 250
    with pytest.raises(ValidationError):
        make_settings(tmp_path, workflow_cache_size=-1)


@pytest.mark.parametrize("backend", ["console", "file"])
def test_production_refuses_the_development_mail_backends(tmp_path: Path, backend: str) -> None:
    # Both keep recipients in clear; the console prints reset and verification tokens.
    with pytest.raises(
        ValidationError, match=f"HELPDESK_EMAIL_BACKEND={backend} is for development"
    ):
        Settings(
            environment=Environment.PRODUCTION,
            var_dir=tmp_path,
            email_backend=backend,
            **PRODUCTION_SECRETS,
        )
    # The default (console) is refused as well: production must name its mail service.
    with pytest.raises(ValidationError, match="HELPDESK_EMAIL_BACKEND=console"):
        Settings(environment=Environment.PRODUCTION, var_dir=tmp_path, **PRODUCTION_SECRETS)
    # Development and test keep them.
    assert Settings(var_dir=tmp_path, email_backend=backend).email_backend == backend
    for good in ("smtp", "sendgrid"):
        settings = Settings(
            environment=Environment.PRODUCTION,
            var_dir=tmp_path,
            email_backend=good,
            **PRODUCTION_SECRETS,
        )
        assert settings.email_backend == good
