"""Checks that need PostgreSQL itself (row locks across connections): skipped with a reason when it is absent."""

from __future__ import annotations

import asyncio
import os

import pytest
from sqlalchemy import text

from core.storage import Database
from tests.conftest import reset_schema

URL = os.environ.get("JXCBOT_TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def pg():
    db = Database(URL)
    try:
        async with asyncio.timeout(5):
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:
        await db.dispose()
        pytest.skip(f"PostgreSQL not reachable at {URL.split('@')[-1]}: {type(exc).__name__}")
    await reset_schema(db)
    yield db
    await db.dispose()


async def test_fifty_concurrent_issues_on_postgresql(pg, settings):
    from tests.test_concurrency import test_fifty_concurrent_issues_against_ten_units_post_exactly_ten as case

    await case(pg, settings)


async def test_concurrent_numbering_on_postgresql(pg, settings):
    from tests.test_concurrency import test_twenty_concurrent_creators_get_unique_numbers as case

    await case(pg, settings)
