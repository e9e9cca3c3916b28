"""Prometheus metrics of the API and the worker.

One module declares every metric, so a reviewer sees in one place that no label can carry an
id, an email address or free text: every label value comes from a closed set in code (a route
*template*, an HTTP method and status, a command name, an outcome word, a verdict). Metrics
live in prometheus_client's default registry, one per process; the API serves them on
`/metrics` (`api.metrics`), a standalone worker on its own port (`serve_worker_metrics`).
The freshness gauges (audit anchor, last backup) are read from files at scrape time by
`helpdesk.metrics_freshness`, which the runtime registers: importing this module stays light
(no database stack). The Temporal SDK's own metrics (task latencies, slots, polls) come from
its Rust core, on the port `temporal_metrics_address` names (`helpdesk.temporal.sdk_runtime`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("helpdesk.metrics")

HTTP_REQUESTS = Counter(
    "helpdesk_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "helpdesk_http_request_duration_seconds",
    "Time to answer an HTTP request (until the response started), by route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TICKET_COMMANDS = Counter(
    "helpdesk_ticket_commands",
    "Commands sent to ticket workflows, by kind and outcome (ok, refused, unavailable)",
    ["kind", "outcome"],
)
COMMANDS_REFUSED = Counter(
    "helpdesk_commands_refused",
    "Workflow commands the worker refused (no or bad MAC, stale, plaintext), by reason",
    ["kind", "reason"],
)
REQUESTS_SHED = Counter(
    "helpdesk_requests_shed",
    "Requests refused at once with 503 because the process carried its maximum",
    ["kind"],
)
TICKET_EVENTS = Counter(
    "helpdesk_ticket_events",
    "SLA warnings and breaches, escalations and fulfilments recorded on tickets",
    ["event"],
)
EMAILS = Counter("helpdesk_emails", "Emails handed to the mail backend, by outcome", ["outcome"])
PUSHES = Counter("helpdesk_pushes", "Socket.IO events published, by outcome", ["outcome"])
SCANS = Counter("helpdesk_attachment_scans", "Attachment virus scans, by verdict", ["verdict"])
SOCKETS = Gauge("helpdesk_sockets_connected", "Socket.IO connections open in this process")
COMPLIANCE = Gauge(
    "helpdesk_compliance_control_status",
    "HIPAA self-check per control: 0 pass, 1 warn, 2 fail (helpdesk.compliance)",
    ["control"],
)
COMPLIANCE_RUN = Gauge(
    "helpdesk_compliance_last_run_timestamp_seconds", "Unix time of the last self-check"
)
# History actions counted as `helpdesk_ticket_events{event=...}`: a closed mapping, so the
# label's values stay bounded whatever else a ticket's history records.
TICKET_EVENT_LABELS = {
    "sla.threshold": "sla_threshold",  # a warning threshold (and its escalation level) reached
    "sla.breached": "sla_breach",
    "sla.fulfilled": "sla_fulfilled",
    "escalate": "escalation",
    "escalated": "escalation",
}


def count_ticket_event(action: str) -> None:
    label = TICKET_EVENT_LABELS.get(action)
    if label is not None:
        TICKET_EVENTS.labels(event=label).inc()


class DatabasePoolCollector(Collector):
    """Connections of the process's database pool: in use, idle, and overflow."""

    def __init__(self) -> None:
        self._engines: dict[str, Any] = {}

    def watch(self, name: str, engine: Any) -> None:
        self._engines[name] = engine

    def forget(self, name: str) -> None:
        self._engines.pop(name, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use = GaugeMetricFamily(
            "helpdesk_db_pool_connections_in_use", "Pooled connections checked out", labels=["pool"]
        )
        idle = GaugeMetricFamily(
            "helpdesk_db_pool_connections_idle", "Pooled connections idle", labels=["pool"]
        )
        for name, engine in list(self._engines.items()):
            pool = engine.pool
            checked_out = getattr(pool, "checkedout", None)
            checked_in = getattr(pool, "checkedin", None)
            if callable(checked_out):
                in_use.add_metric([name], float(checked_out()))
            if callable(checked_in):
                idle.add_metric([name], float(checked_in()))
        yield in_use
        yield idle


DB_POOLS = DatabasePoolCollector()
REGISTRY.register(DB_POOLS)


def serve_worker_metrics(host: str, port: int) -> Any:
    """Serve this process's metrics on host:port (a standalone worker has no HTTP API);
    returns the server (its `shutdown()` stops it)."""
    server, _thread = start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server
