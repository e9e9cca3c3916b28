#!/usr/bin/env bash
# Headless Chromium (Debian's `chromium`) for scripts/ui_screenshots.py: screenshots of the
# Temporal UI as a manager sees it. Idempotent: does nothing when it is installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
