#!/usr/bin/env bash
# Installs checkov (infrastructure-as-code scanner, PyPI) into its own virtualenv under
# .tools/checkov, so its many pinned dependencies never mix with the product's .venv.
# tests/unit/test_deploy_azure.py runs it over deploy/azure (Bicep). Idempotent: an existing
# install of the pinned version is kept. Without network it says so and exits 0; the
# checkov test then skips with that reason.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.tools/checkov"
VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"
STAMP="$PREFIX/.installed-$VERSION"

if [ -f "$STAMP" ] && [ -x "$PREFIX/bin/checkov" ]; then
    exit 0
fi
rm -rf "$PREFIX"
"$PYTHON" -m venv "$PREFIX"
if ! "$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$VERSION"; then
    echo "install-checkov: could not install checkov $VERSION; the template scan will be skipped" >&2
    rm -rf "$PREFIX"
    exit 0
fi
"$PREFIX/bin/checkov" --version >/dev/null
touch "$STAMP"
