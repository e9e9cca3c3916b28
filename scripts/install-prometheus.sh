#!/usr/bin/env bash
# Installs Debian's Prometheus (prometheus and promtool) for the metrics tests (idempotent):
# promtool checks and unit-tests deploy/prometheus/alerts.yml, and a real Prometheus scrapes
# a running API and worker. The package's own service is not used (the tests start theirs).
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends prometheus

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

command -v promtool >/dev/null 2>&1 || { echo "promtool missing after install" >&2; exit 1; }
