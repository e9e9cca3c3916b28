"""The `helpdesk` command as an operator runs it: a real subprocess with HELPDESK_* settings
pointing at a temporary var dir, and real SQLite files underneath."""

from __future__ import annotations

import datetime as dt
import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpdesk import devserver
from helpdesk.settings import Settings
from tests.conftest import free_port
from tests.support.cli import PASSWORD, audit_rows, cli_env, create_admin, helpdesk


def test_migrate_creates_the_database_and_dev_secrets(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    result = helpdesk(var_dir, "migrate")
    assert result.returncode == 0, result.stderr
    assert (var_dir / "helpdesk.db").exists()
    assert (var_dir / "secrets.json").stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(var_dir / "helpdesk.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert {"users", "audit_log", "tickets"} <= tables
    # Idempotent: a second run changes nothing and succeeds.
    assert helpdesk(var_dir, "migrate").returncode == 0


def test_create_admin_prints_an_otpauth_uri_and_audits(deployment: Path) -> None:
    result = create_admin(deployment, "admin4@example.test")
    assert result.returncode == 0, result.stderr
    uri = next(line for line in result.stdout.splitlines() if line.startswith("otpauth://"))
    assert uri.startswith("otpauth://totp/Helpdesk:admin4%40example.test?secret=")
    assert PASSWORD not in result.stdout + result.stderr

    with sqlite3.connect(deployment / "helpdesk.db") as db:
        role, mfa, email_enc = db.execute(
            "SELECT role, mfa_enabled, email_enc FROM users ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
        [details] = db.execute(
            "SELECT details FROM audit_log WHERE action = 'user.create' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    assert role == "ADMINISTRATOR"
    assert mfa == 1
    assert b"admin4@example.test" not in email_enc  # stored encrypted
    assert json.loads(details) == {"role": "ADMINISTRATOR", "mfa": True, "via": "cli"}


def test_create_admin_refuses_a_duplicate_and_a_short_password(deployment: Path) -> None:
    duplicate = create_admin(deployment, "ADMIN1@example.test")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr

    short = helpdesk(
        deployment, "create-admin", "--email", "x@example.test", "--password-stdin", stdin="short\n"
    )
    assert short.returncode == 1
    assert "at least 12 characters" in short.stderr

    bad = create_admin(deployment, "not-an-address")
    assert bad.returncode == 1
    assert "--email is not a valid address" in bad.stderr


def test_audit_verify_reports_an_intact_chain(deployment: Path) -> None:
    rows = len(audit_rows(deployment))
    assert rows >= 3
    anchored = helpdesk(deployment, "audit", "anchor")
    assert anchored.returncode == 0, anchored.stderr
    result = helpdesk(deployment, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"audit chain intact ({rows} rows); latest anchor: row {rows}")


def test_audit_verify_names_an_edited_row(deployment: Path) -> None:
    with sqlite3.connect(deployment / "helpdesk.db") as db:
        # The migration makes the table append-only; an attacker with file access drops it.
        with pytest.raises(sqlite3.DatabaseError):
            db.execute("UPDATE audit_log SET details = '{}' WHERE seq = 2")
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("""UPDATE audit_log SET details = '{"role": "END_USER"}' WHERE seq = 2""")
    result = helpdesk(deployment, "audit", "verify")
    assert result.returncode == 1
    assert "row 2" in result.stdout
    assert "altered" in result.stdout


def test_audit_verify_reports_a_deleted_middle_row_as_missing(deployment: Path) -> None:
    with sqlite3.connect(deployment / "helpdesk.db") as db:
        db.execute("DROP TRIGGER audit_log_no_delete")
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    result = helpdesk(deployment, "audit", "verify")
    assert result.returncode == 1
    assert "row 3" in result.stdout
    assert "rows 2..2 are missing" in result.stdout


def test_a_five_year_retention_refuses_to_start(tmp_path: Path) -> None:
    result = helpdesk(tmp_path / "var", "migrate", HELPDESK_AUDIT_RETENTION_YEARS="5")
    assert result.returncode == 1
    assert "HELPDESK_AUDIT_RETENTION_YEARS" in result.stderr
    assert "six years" in result.stderr or "6 years" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_refuses_a_port_in_use_with_one_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = helpdesk(
            tmp_path / "var",
            "dev",
            HELPDESK_API_PORT=str(port),
            HELPDESK_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
            HELPDESK_TEMPORAL_UI_PORT=str(free_port()),
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 (API) is already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_temporal_binary_is_a_clear_prerequisite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(devserver.Prerequisite, match="`temporal` CLI was not found"):
        devserver.temporal_binary()


def test_temporal_command_persists_with_wal_and_the_ui_codec_is_opt_in(
    settings: Settings,
) -> None:
    settings.temporal_address = "127.0.0.1:17233"
    settings.temporal_ui_port = 18233
    settings.api_port = 18000
    command = devserver.temporal_command(settings, "/bin/temporal")
    joined = " ".join(command)
    assert command[:3] == ["/bin/temporal", "server", "start-dev"]
    assert f"--db-filename {settings.var_dir / 'temporal.db'}" in joined
    assert "--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal" in joined
    assert "--ip 127.0.0.1 --port 17233 --ui-port 18233" in joined
    assert "--search-attribute TicketStatus=Keyword" in joined
    assert "--search-attribute Escalated=Bool" in joined
    # By default the UI is not pointed at a codec endpoint the browser cannot authenticate
    # to (its red "Codec Server could not connect" banner on every page).
    assert "--ui-codec-endpoint" not in joined
    settings.temporal_ui_codec = True
    joined = " ".join(devserver.temporal_command(settings, "/bin/temporal"))
    assert "--ui-codec-endpoint http://127.0.0.1:18000/api/v1/temporal-codec" in joined


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:7233", "127.0.0.1", 7233),
        ("[::1]:7000", "::1", 7000),
        ("temporal:7233", "temporal", 7233),
    ],
)
def test_parse_address(address: str, host: str, port: int) -> None:
    assert devserver.parse_address(address) == devserver.Endpoint(host, port)


def test_parse_address_refuses_garbage() -> None:
    with pytest.raises(devserver.Prerequisite, match="host:port"):
        devserver.parse_address("no-port")


# --- TLS 1.3 ---------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def handshake(port: int, cert: Path, version: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())


@pytest.mark.temporal
def test_api_with_certificates_speaks_tls13_only(tmp_path: Path, temporal_server: str) -> None:
    cert, key = self_signed(tmp_path)
    var_dir = tmp_path / "var"
    assert helpdesk(var_dir, "migrate").returncode == 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "helpdesk.cli", "api"],
        env=cli_env(
            var_dir,
            HELPDESK_API_PORT=str(port),
            HELPDESK_TLS_CERTFILE=str(cert),
            HELPDESK_TLS_KEYFILE=str(key),
            HELPDESK_TEMPORAL_ADDRESS=temporal_server,
            HELPDESK_RUN_WORKER_IN_API="false",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        version = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                version = handshake(port, cert, ssl.TLSVersion.TLSv1_3)
                break
            except (ConnectionRefusedError, ssl.SSLError, OSError):
                time.sleep(0.2)
        assert version == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            handshake(port, cert, ssl.TLSVersion.TLSv1_2)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Traceback" not in output


@pytest.mark.parametrize("command", ["api", "dev"])
def test_api_without_a_reachable_temporal_explains_and_exits_1(
    tmp_path: Path, command: str
) -> None:
    result = helpdesk(
        tmp_path / "var",
        command,
        HELPDESK_API_PORT=str(free_port()),
        HELPDESK_TEMPORAL_DEV_SERVER="false",
        HELPDESK_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        timeout=120,
    )
    assert result.returncode == 1
    assert f"helpdesk {command}: cannot reach Temporal at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
