"""Migration 0002: `jxcbot init` on a 0001 database adds inbound_events and outbox, keeps the data, and reverts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import select, text

from core.messaging.inbound import record_inbound
from core.messaging.outbox import enqueue
from core.models import Customer
from core.storage import Database
from core.storage.migrate import alembic_config, upgrade
from tests.conftest import PG_URL, table_names, test_database_url

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


async def test_upgrade_from_0001_adds_the_messaging_tables_and_downgrade_removes_them(tmp_path: Path):
    url = test_database_url(tmp_path)
    db = Database(url)
    try:
        if PG_URL:
            async with db.engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        await upgrade(url, "0001")
        async with db.session() as s:
            s.add(Customer(code="C1", name="老客户"))
        assert not {"inbound_events", "outbox"} & await table_names(db)

        await upgrade(url)  # what `jxcbot init` runs
        assert {"inbound_events", "outbox", "customers"} <= await table_names(db)
        async with db.session() as s:
            assert [c.code for c in (await s.execute(select(Customer))).scalars()] == ["C1"]
            assert await record_inbound(s, platform="wecom", user_id="u1", dedupe_key="u1:1", received_at=NOW)
            assert await enqueue(s, "k1", {"platform": "wecom", "kind": "user", "address": "u1"},
                                 {"kind": "text", "text": "hi"}, NOW)
            assert not await enqueue(s, "k1", {}, {}, NOW)
        await db.dispose()

        await asyncio.to_thread(command.downgrade, alembic_config(url), "0001")
        assert not {"inbound_events", "outbox"} & await table_names(db)
        assert "customers" in await table_names(db)
    finally:
        await db.dispose()
