"""Apply the Alembic migrations programmatically (CLI, dev runner, tests)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from helpdesk.db import Database

log = logging.getLogger("helpdesk.migrate")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str, settings: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    # Data migrations that re-seal rows (0005) take their keys from these settings.
    config.attributes["settings"] = settings
    return config


# Set by a migration whose new analytics cells start empty on a database holding tickets.
REBUILD_DUE = "analytics_rebuild_due"


def upgrade(database_url: str, revision: str = "head", *, settings: Any = None) -> None:
    """Bring the database at `database_url` to `revision` (blocking), then rebuild the
    analytics facts and rollups when a migration asked for it (0009 on a database that held
    tickets). `settings` gives the keys to migrations that re-seal data and to the rebuild
    (default: loaded from HELPDESK_* when needed)."""
    command.upgrade(alembic_config(database_url, settings), revision)
    asyncio.run(_rebuild_if_due(database_url, settings))


async def _rebuild_if_due(database_url: str, settings: Any) -> None:
    database = Database(database_url)
    try:
        async with database.read() as session:
            due = await session.scalar(
                text("SELECT value FROM counters WHERE name = :name"), {"name": REBUILD_DUE}
            )
    finally:
        await database.dispose()
    if due is None:
        return
    # Imported here: the analytics and runtime stack is needed only when a rebuild is due,
    # and the CLI's `migrate` path stays light otherwise.
    from helpdesk.analytics.commands import rebuild_database
    from helpdesk.settings import get_settings

    chosen = (settings or get_settings()).model_copy(update={"database_url": database_url})
    result = await rebuild_database(chosen)
    log.info("analytics rebuilt after the upgrade: %s tickets", result.tickets)
    database = Database(database_url)
    try:
        async with database.transaction() as session:
            await session.execute(
                text("DELETE FROM counters WHERE name = :name"), {"name": REBUILD_DUE}
            )
    finally:
        await database.dispose()


def downgrade(database_url: str, revision: str, *, settings: Any = None) -> None:
    command.downgrade(alembic_config(database_url, settings), revision)


async def upgrade_async(database_url: str, revision: str = "head", *, settings: Any = None) -> None:
    await asyncio.to_thread(upgrade, database_url, revision, settings=settings)
