"""Create or upgrade the database schema with Alembic (`jxcbot init`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from core.models import Base
from core.storage.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic Config pointing at the bundled migrations and the given database URL."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Upgrade to revision (blocking; runs its own event loop)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade to revision from async code (Alembic runs in a worker thread)."""
    await asyncio.to_thread(upgrade_sync, url, revision)


async def recreate_schema(db: Database) -> None:
    """Drop and recreate every table from the models (tests and benchmarks only: PostgreSQL loses schema public)."""
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await conn.run_sync(Base.metadata.create_all)
