"""Liveness and readiness probes (public, no PHI)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> dict[str, str]:
    """The database answers and the Temporal client is connected."""
    async with runtime.database.transaction() as session:
        await session.execute(text("SELECT 1"))
    return {"status": "ready", "temporal": "connected" if runtime.temporal else "absent"}
