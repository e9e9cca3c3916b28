"""Helpers and fixtures of the CLI tests: the helpdesk command in a subprocess, a migrated
deployment."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

PASSWORD = "a long admin passphrase 7"


def cli_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh deployment: no inherited HELPDESK_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_")}
    env.update(
        HELPDESK_ENVIRONMENT="development",
        HELPDESK_VAR_DIR=str(var_dir),
        HELPDESK_ARGON2_TIME_COST="1",
        HELPDESK_ARGON2_MEMORY_COST="8192",
    )
    env.update(extra)
    return env


def helpdesk(
    var_dir: Path, *args: str, stdin: str | None = None, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helpdesk.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(var_dir, **extra),
        timeout=timeout,
        cwd=var_dir.parent,
    )


def create_admin(var_dir: Path, email: str) -> subprocess.CompletedProcess[str]:
    return helpdesk(
        var_dir, "create-admin", "--email", email, "--password-stdin", stdin=PASSWORD + "\n"
    )


@pytest.fixture(scope="module")
def deployment_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated deployment with three administrators (so the audit log has a middle)."""
    var_dir = tmp_path_factory.mktemp("deployment") / "var"
    migrated = helpdesk(var_dir, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated" in migrated.stdout
    for n in (1, 2, 3):
        created = create_admin(var_dir, f"admin{n}@example.test")
        assert created.returncode == 0, created.stderr
    return var_dir


@pytest.fixture
def deployment(deployment_template: Path, tmp_path: Path) -> Path:
    """A private copy of the template deployment (tests tamper with it)."""
    var_dir = tmp_path / "var"
    shutil.copytree(deployment_template, var_dir)
    return var_dir


def audit_rows(var_dir: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(var_dir / "helpdesk.db") as db:
        return list(db.execute("SELECT seq, action FROM audit_log ORDER BY seq"))
