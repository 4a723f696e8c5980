"""Shared fixtures: a fresh database per test on SQLite, or on PostgreSQL via JXCBOT_TEST_DATABASE_URL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.config import Settings, load_config
from core.storage import Database
from core.storage.migrate import recreate_schema

PG_URL = os.environ.get("JXCBOT_TEST_DATABASE_URL", "")


def test_database_url(tmp_path: Path) -> str:
    """The URL the suite runs against: PostgreSQL when configured, else a fresh SQLite file."""
    return PG_URL or f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


test_database_url.__test__ = False  # type: ignore[attr-defined]


reset_schema = recreate_schema


@pytest.fixture
def settings() -> Settings:
    """Default settings (no config file, no environment overrides)."""
    return load_config(None, env={})


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database with the full schema."""
    database = Database(test_database_url(tmp_path))
    await reset_schema(database)
    yield database
    await database.dispose()


async def table_names(db: Database) -> set[str]:
    """The tables in db's schema now (for migration tests)."""
    from sqlalchemy import inspect

    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
