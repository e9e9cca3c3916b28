"""Liveness and readiness probes (public, no PHI)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import RuntimeDep
from helpdesk import errors

router = APIRouter(tags=["health"])

# Readiness needs the database's writer within this long: a process whose writer is stuck
# (or queued far behind) is taken out of rotation instead of receiving more requests.
READY_WAIT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The database writer is not free"}})
async def readyz(runtime: RuntimeDep) -> dict[str, str]:
    """The database answers and its writer is free within 2 s; says whether the Temporal
    client is connected. 503 with Retry-After otherwise."""
    try:
        async with asyncio.timeout(READY_WAIT_SECONDS):
            async with runtime.database.transaction(wait=READY_WAIT_SECONDS) as session:
                await session.execute(text("SELECT 1"))
    except TimeoutError:
        raise errors.Unavailable("the database did not answer in time", retry_after=2) from None
    return {"status": "ready", "temporal": "connected" if runtime.temporal else "absent"}
