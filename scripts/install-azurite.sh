#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator, npm package) into .tools/azurite so the
# Azure Blob attachment store is tested against a real Blob API on loopback. Idempotent.
# Without node/npm it says so and exits 0: the Azure tests then skip with that reason.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.tools/azurite"
VERSION="${AZURITE_VERSION:-3.37.0}"

if [ -x "$PREFIX/node_modules/.bin/azurite-blob" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "install-azurite: node/npm not found; Azure Blob store tests will be skipped" >&2
    exit 0
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "azurite@$VERSION"
test -x "$PREFIX/node_modules/.bin/azurite-blob"
