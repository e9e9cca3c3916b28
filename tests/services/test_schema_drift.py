"""The migrations build exactly the schema the models declare (tables, columns, indexes):
a model change without its migration, or the reverse, fails here."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import models
from helpdesk.migrate import upgrade
from models.base import Base


def test_migrated_sqlite_schema_matches_the_models(tmp_path: Path) -> None:
    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"models.{module.name}")
    path = tmp_path / "schema.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
    assert "ix_tickets_status_created" in {i.name for i in Base.metadata.tables["tickets"].indexes}
