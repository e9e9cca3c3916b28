"""Importing the metric declarations stays light: a process that only counts (the CLI, a
standalone worker before it connects) does not load the database stack for them."""

from __future__ import annotations

import subprocess
import sys


def test_importing_metrics_loads_no_database_stack() -> None:
    code = (
        "import sys, helpdesk.metrics; "
        "print(sorted(m for m in ('sqlalchemy', 'models', 'helpdesk.settings') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
