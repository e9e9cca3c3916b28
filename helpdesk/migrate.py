"""Apply the Alembic migrations programmatically (CLI, dev runner, tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str, settings: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    # Data migrations that re-seal rows (0005) take their keys from these settings.
    config.attributes["settings"] = settings
    return config


def upgrade(database_url: str, revision: str = "head", *, settings: Any = None) -> None:
    """Bring the database at `database_url` to `revision` (blocking). `settings` gives the
    keys to migrations that re-seal data (default: loaded from HELPDESK_* when needed)."""
    command.upgrade(alembic_config(database_url, settings), revision)


def downgrade(database_url: str, revision: str, *, settings: Any = None) -> None:
    command.downgrade(alembic_config(database_url, settings), revision)


async def upgrade_async(database_url: str, revision: str = "head", *, settings: Any = None) -> None:
    await asyncio.to_thread(upgrade, database_url, revision, settings=settings)
