"""What the request metrics cost: the list p99 and ticket creation, with and without them.

    python -m bench.metrics_overhead [--rounds 2] [--tickets 100000] [--creations 600]

Runs `bench.lists` (SQLite, `--tickets` rows loaded once into a kept directory, then
measured) and `bench.tickets` (creations through the API and the worker on a Temporal dev
server) as subprocesses, alternately with `HELPDESK_METRICS_ENABLED=true` and `false`, for
`--rounds` rounds, so that both settings meet the same background. `false` removes the
metrics middleware and `/metrics`; the domain counters (commands, emails, scans) stay, each
one `Counter.inc()` per event. Prints per setting the median over rounds of the list p99 and
p50, the API creation rate and the CPU per ticket, then the overhead; the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.run import _last_json_line


def _run(module: str, args: list[str], metrics: bool) -> dict[str, Any]:
    env = {**os.environ, "HELPDESK_METRICS_ENABLED": "true" if metrics else "false"}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{module} failed ({proc.returncode})")
    return _last_json_line(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--creations", type=int, default=600)
    options = parser.parse_args()
    keep = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    list_args = [
        "--tickets",
        str(options.tickets),
        "--users",
        str(max(options.tickets // 20, 100)),
        "--requests",
        "1020",
        "--backend",
        "sqlite",
        "--keep",
        str(keep),
    ]
    ticket_args = ["--tickets", str(options.creations), "--clients", "32", "--updates", "50"]
    _run("bench.lists", [*list_args, "--requests", "60"], True)  # load once, untimed
    samples: dict[bool, dict[str, list[float]]] = {True: {}, False: {}}
    for round_no in range(options.rounds):
        for metrics in (True, False) if round_no % 2 == 0 else (False, True):
            lists = _run("bench.lists", list_args, metrics)
            created = _run("bench.tickets", ticket_args, metrics)
            got = {
                "list_p50_ms": lists["list_p50_ms_sqlite"],
                "list_p99_ms": lists["list_p99_ms_sqlite"],
                "create_per_s": created["api_tickets_per_s"],
                "create_cpu_ms_python": created["create_cpu_ms_python"],
                "update_api_p50_ms": created["update_api_p50_ms"],
            }
            for name, value in got.items():
                samples[metrics].setdefault(name, []).append(float(value))
            print(f"round {round_no + 1} metrics={metrics}: {json.dumps(got)}", flush=True)
    figures: dict[str, Any] = {"rounds": options.rounds, "list_tickets": options.tickets}
    for metrics, label in ((True, "with"), (False, "without")):
        for name, values in samples[metrics].items():
            figures[f"{name}_{label}"] = round(statistics.median(values), 2)
    for name in samples[True]:
        on, off = figures[f"{name}_with"], figures[f"{name}_without"]
        figures[f"{name}_overhead_pct"] = round((on - off) / off * 100, 1) if off else None
    print(json.dumps(figures, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
