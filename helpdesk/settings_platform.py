"""Settings of where and how the help desk runs: the kind of deployment and its local
state, the network, the database, Temporal and the worker, and observability. Groups of
`helpdesk.settings.Settings` (never used alone)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import NoDecode


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ProcessSettings(BaseModel):
    """What kind of deployment this is, and where its local state lives."""

    environment: Environment = Field(
        Environment.DEVELOPMENT, description="development, test or production"
    )
    var_dir: Path = Field(Path("var"), description="Directory for local state")


class NetworkSettings(BaseModel):
    """Where the API listens, and whom it trusts."""

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


class DatabaseSettings(BaseModel):
    """The database."""

    database_url: str = Field("", description="SQLAlchemy async URL; default SQLite under var/")
    database_echo: bool = Field(False, description="Log SQL statements (never in production)")
    database_busy_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Wait this long for the SQLite writer or a pooled connection, then 503",
    )


class TemporalSettings(BaseModel):
    """Reaching Temporal, and the worker's share of it."""

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
    # update measured here); each cached ticket workflow holds about 100 KB (bench.core at
    # 3000; a workflow that only waits holds 80 KB under the same worker, the SDK's floor).
    workflow_cache_size: int = Field(
        3000,
        ge=0,
        description="Ticket workflows the worker keeps in memory (about 100 KB each); "
        "a change to one not kept replays its history first",
    )


class ObservabilitySettings(BaseModel):
    """Logs, metrics and traces."""

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
