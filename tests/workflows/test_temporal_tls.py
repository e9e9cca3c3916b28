"""Settings for Temporal Cloud: mTLS client certificate files or an API key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.service import TLSConfig

from helpdesk.temporal import tls_config
from tests.conftest import make_settings


def test_plain_and_tls_flags(tmp_path: Path) -> None:
    assert tls_config(make_settings(tmp_path)) is False
    assert tls_config(make_settings(tmp_path, temporal_tls=True)) is True
    # An API key (Temporal Cloud) always travels over TLS.
    with_key = make_settings(tmp_path, temporal_api_key=SecretStr("k"))
    assert tls_config(with_key) is True


def test_mtls_client_certificate_files(tmp_path: Path) -> None:
    cert, key, ca = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    ca.write_bytes(b"CA")
    settings = make_settings(
        tmp_path,
        temporal_tls_client_cert_file=cert,
        temporal_tls_client_key_file=key,
        temporal_tls_server_ca_file=ca,
    )
    config = tls_config(settings)
    assert isinstance(config, TLSConfig)
    assert (config.client_cert, config.client_private_key, config.server_root_ca_cert) == (
        b"CERT",
        b"KEY",
        b"CA",
    )
    with pytest.raises(ValueError, match="set together"):
        tls_config(make_settings(tmp_path, temporal_tls_client_cert_file=cert))
