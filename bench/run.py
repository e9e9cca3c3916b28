"""Run every benchmark on the embedded default and print one JSON object of all figures.

Each benchmark runs as its own subprocess (`python -m bench.<name>`, whose last output line
is a JSON object), one after another so they do not compete for the two cores; their figures
are merged with the machine's load. The LAST line printed is the merged JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

# Order: cheap first, the million-row list load last.
BENCHMARKS = [
    "sqlite_driver",
    "login",
    "tickets",
    "push",
    "sla",
    # Issue 12's four ratios (creation CPU and p50, worker memory per cached ticket, SLA
    # lateness over the timer floor), each measured within one process.
    "core",
    "attachments",
    "analytics",
    "lists",
]


def _last_json_line(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise ValueError("no JSON line in the benchmark's output")


def run_one(name: str, timeout_s: int = 3600) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    sys.stderr.write(proc.stderr[-4000:])
    sys.stdout.write(proc.stdout)
    elapsed = round(time.perf_counter() - started, 1)
    if proc.returncode != 0:
        return {f"{name}_error": f"exit {proc.returncode}", f"{name}_seconds": elapsed}
    try:
        figures = _last_json_line(proc.stdout)
    except ValueError as exc:
        return {f"{name}_error": str(exc), f"{name}_seconds": elapsed}
    figures[f"{name}_seconds"] = elapsed
    return figures


def main() -> None:
    wanted = sys.argv[1:] or BENCHMARKS
    merged: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    for name in wanted:
        print(f"== bench.{name}", flush=True)
        merged.update(run_one(name))
    merged["load_after"] = os.getloadavg()[0]
    print(json.dumps(merged, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
