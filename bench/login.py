"""Login benchmark: p50/p99 of POST /api/v1/auth/login on SQLite with the production
argon2id parameters (the defaults of Settings).

    python -m bench.login [--logins 200] [--warmup 5]

One account is registered through the API on a fresh, migrated SQLite file in a temporary
directory; then it signs in `--logins` times through the ASGI app (httpx ASGITransport, one
request at a time: latency, not throughput). Each login is the real path: per-IP limiter,
blind-index lookup, argon2id verification in a thread, a new server-side session with its
refresh token, an access JWT and the chained audit row. The per-IP limit is raised for the
run (it would otherwise refuse the benchmark itself). The last line printed is one JSON
object: {"login_p50_ms": ..., "login_p99_ms": ..., ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app, prepare_runtime
from helpdesk.migrate import upgrade_async
from helpdesk.runtime import build_runtime
from helpdesk.settings import Settings

EMAIL = "bench.user@example.test"
PASSWORD = "a benchmark passphrase 2024"


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


async def run(logins: int, warmup: int) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp:
        var_dir = Path(tmp)
        url = f"sqlite+aiosqlite:///{var_dir / 'helpdesk.db'}"
        await upgrade_async(url)
        # Production argon2 parameters: the defaults, untouched.
        values: dict[str, Any] = {
            "environment": "test",
            "var_dir": var_dir,
            "database_url": url,
            "email_backend": "file",
            "run_worker_in_api": False,
            "rate_limit_per_minute": 1_000_000,
        }
        settings = Settings(**values)
        runtime = prepare_runtime(build_runtime(settings))
        try:
            app = create_app(runtime=runtime, run_worker=False)
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                registered = await http.post(
                    "/api/v1/auth/register",
                    json={"email": EMAIL, "password": PASSWORD, "full_name": "Bench User"},
                )
                registered.raise_for_status()
                body = {"email": EMAIL, "password": PASSWORD}
                for _ in range(warmup):
                    (await http.post("/api/v1/auth/login", json=body)).raise_for_status()
                samples = []
                for _ in range(logins):
                    start = time.perf_counter()
                    response = await http.post("/api/v1/auth/login", json=body)
                    samples.append((time.perf_counter() - start) * 1000)
                    response.raise_for_status()
        finally:
            await runtime.close()
    return {
        "login_p50_ms": round(statistics.median(samples), 2),
        "login_p99_ms": round(percentile(samples, 99), 2),
        "login_max_ms": round(max(samples), 2),
        "logins": logins,
        "argon2_time_cost": settings.argon2_time_cost,
        "argon2_memory_kib": settings.argon2_memory_cost,
        "database": "sqlite",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.logins, args.warmup))))


if __name__ == "__main__":
    main()
