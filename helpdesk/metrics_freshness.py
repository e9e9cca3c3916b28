"""Freshness gauges, read at scrape time: when the audit chain was last anchored and when
the last complete backup was made. Apart from `helpdesk.metrics` because reading them needs
the anchor store and the backup layout (the database stack, the settings); the runtime
registers the collector (`FRESHNESS.watch(settings)`) when it is built."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from helpdesk.audit_anchor import AnchorStoreError, FileAnchorStore
from helpdesk.backup.retention import backup_time, list_backups


class FreshnessCollector(Collector):
    """When the audit chain was last anchored and the last backup made, read at scrape time
    from the anchor file and the backup directory the settings name (the alert rules watch
    their age): a short-lived `helpdesk backup create` cannot be scraped itself."""

    def __init__(self) -> None:
        self._settings: Any = None

    def watch(self, settings: Any) -> None:
        self._settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        anchor = GaugeMetricFamily(
            "helpdesk_audit_anchor_last_timestamp_seconds",
            "Unix time of the newest audit chain anchor in the anchor store",
        )
        backup = GaugeMetricFamily(
            "helpdesk_backup_last_success_timestamp_seconds",
            "Unix time of the newest complete backup in the backup directory",
        )
        settings = self._settings
        if settings is not None:
            try:
                latest = FileAnchorStore(settings.audit_anchor_path).latest_now()
            except (AnchorStoreError, OSError):
                latest = None
            if latest is not None:
                anchor.add_metric([], latest.at.timestamp())
            made = [backup_time(path) for path in list_backups(settings.backups_path)]
            newest = max((t for t in made if t is not None), default=None)
            if newest is not None:
                backup.add_metric([], newest.timestamp())
        yield anchor
        yield backup


FRESHNESS = FreshnessCollector()
REGISTRY.register(FRESHNESS)
