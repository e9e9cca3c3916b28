"""The HTTP load generator of bench/tickets.py, in a process of its own.

    python -m bench.http_load --base URL --token TOKEN --count N --clients C

A real client population does not share the server's interpreter: run in the API's process,
64 httpx clients take a good share of the one GIL that the API, the worker's activities and
its workflow tasks also need, and the benchmark would measure its own client. Creates
`--count` tickets with `--clients` concurrent connections (each 503/429 waits Retry-After,
at most 10 s, and retries with the same Idempotency-Key) and prints one JSON line:
``{"per_s": ..., "ids": [...], "shed": ..., "retried": ..., "latency_p50_ms": ...,
"latencies_ms": [...], "cpu_s": ...}`` (cpu_s: this client process's own CPU seconds for
the run, so that a benchmark can report the client apart from the server's processes).
`--priority P` gives every ticket that priority (default: the four in turn).

    python -m bench.http_load --base URL --token TOKEN --burst N

sends N creations at once over N connections opened beforehand (no retry) and prints
``{"answers": [[status, ms, retry_after], ...], "healthz_p50_ms": ...}``: the load-shedding
figure, measured from outside the server's process, beside a burst as large of /healthz.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

import httpx


async def create_many(
    base: str, token: str, count: int, clients: int, priority: str | None = None
) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    ids: list[str] = []
    latencies: list[float] = []
    shed = retried = 0
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:

        async def worker() -> None:
            nonlocal shed, retried
            while True:
                try:
                    n = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                key = f"bench-{n}-{uuid.uuid4().hex[:8]}"
                body = {
                    "title": f"Bench ticket {n}",
                    "description": "Printer on floor 2 is jammed",
                    "priority": priority or ("LOW", "MEDIUM", "HIGH", "CRITICAL")[n % 4],
                    "tags": ["bench"],
                }
                t0 = time.perf_counter()
                while True:
                    try:
                        r = await http.post(
                            "/api/v1/tickets",
                            json=body,
                            headers={**headers, "Idempotency-Key": key},
                        )
                    except httpx.TransportError:
                        retried += 1  # a dropped keep-alive connection: same key, safe
                        continue
                    if r.status_code == 201:
                        ids.append(r.json()["id"])
                        latencies.append((time.perf_counter() - t0) * 1000)
                        break
                    if r.status_code in (429, 503):
                        shed += 1
                        # As a well-behaved client does: wait what the server asked.
                        await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 10.0))
                        continue
                    raise RuntimeError(f"create answered {r.status_code}: {r.text[:200]}")

        cpu0 = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    return {
        "per_s": count / elapsed,
        "ids": ids,
        "shed": shed,
        "retried": retried,
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latencies_ms": [round(ms, 2) for ms in latencies],
        "cpu_s": round(cpu, 3),
    }


async def burst(base: str, token: str, count: int) -> dict[str, object]:
    """`count` creations at once, each on its own already-open connection."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        # Open the connections first: the figure is the server's answer, not TCP set-up.
        await asyncio.gather(*(http.get("/healthz") for _ in range(count)))

        async def one(n: int) -> list[object]:
            t0 = time.perf_counter()
            r = await http.post("/api/v1/tickets", json={"title": f"Burst {n}"}, headers=headers)
            return [r.status_code, (time.perf_counter() - t0) * 1000, r.headers.get("Retry-After")]

        answers = await asyncio.gather(*(one(n) for n in range(count)))

        async def probe() -> float:
            t0 = time.perf_counter()
            await http.get("/healthz")
            return (time.perf_counter() - t0) * 1000

        # The same burst against the cheapest route: what the client, the connections and
        # the machine cost by themselves, to read the shed figure against.
        healthz = await asyncio.gather(*(probe() for _ in range(count)))
    return {"answers": answers, "healthz_p50_ms": statistics.median(healthz)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--priority", choices=["LOW", "MEDIUM", "HIGH", "CRITICAL"])
    parser.add_argument("--burst", type=int, help="N creations at once (load shedding)")
    args = parser.parse_args()
    if args.burst:
        result = asyncio.run(burst(args.base, args.token, args.burst))
    else:
        result = asyncio.run(
            create_many(args.base, args.token, args.count, args.clients, args.priority)
        )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
