"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from core.models import Base
from core.storage import Database
from core.storage.migrate import upgrade
from tests.conftest import PG_URL, test_database_url


async def test_upgrade_head_matches_models_and_is_idempotent(tmp_path: Path):
    url = test_database_url(tmp_path)
    db = Database(url)
    if PG_URL:
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await upgrade(url)
    await upgrade(url)  # a second run is a no-op

    def diff(sync_conn):
        return compare_metadata(MigrationContext.configure(sync_conn, opts={"compare_type": True}), Base.metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert version == "0011"
    await db.dispose()
