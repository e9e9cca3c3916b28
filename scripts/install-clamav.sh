#!/usr/bin/env bash
# Installs Debian's clamd and sigtool for the attachment tests (idempotent).
# No freshclam: the signature feed cannot be downloaded here; the tests use the small EICAR
# signature database committed under helpdesk/data/clamav/ (make dev uses it too).
set -euo pipefail

if command -v clamd >/dev/null 2>&1 && command -v sigtool >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
# apt-get update only when the package lists do not know clamav-daemon yet.
if ! apt-cache show clamav-daemon >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends clamav clamav-daemon

# Debian starts clamav-daemon and clamav-freshclam as services where systemd runs; the tests
# run their own clamd, and freshclam cannot reach its mirrors here.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now clamav-freshclam.service clamav-daemon.service \
        clamav-daemon.socket >/dev/null 2>&1 || true
fi

command -v clamd >/dev/null 2>&1 || { echo "clamd missing after install" >&2; exit 1; }
command -v sigtool >/dev/null 2>&1 || { echo "sigtool missing after install" >&2; exit 1; }
