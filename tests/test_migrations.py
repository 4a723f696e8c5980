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


async def test_upgrade_flags_keys_whose_existing_history_is_out_of_time_order(db):
    """Migration 0011's backfill sets stock_balances.unordered for keys already posted out of time order (the
    stock-out reading trusts balance_after only for the others); run here on a ledger written in both orders."""
    import importlib.util
    from datetime import UTC, datetime
    from decimal import Decimal

    from sqlalchemy import select, update

    from core.models import Batch, Document, Product, StockBalance, StockMove, Warehouse

    path = Path(__file__).parents[1] / "core/storage/migrations/versions/0011_covering_move_index.py"
    spec = importlib.util.spec_from_file_location("m0011", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    async with db.session() as s:
        s.add(Warehouse(id=1, code="WH1", name="中央仓"))
        s.add(Document(id=1, number="D1", type="adjustment", status="posted", validation_mode="strict"))
        s.add_all(Product(id=pid, sku=f"P{pid}", name=f"商品{pid}", stock_unit="kg", purchase_unit="kg")
                  for pid in (1, 2))
        await s.flush()
        s.add_all(Batch(id=pid, product_id=pid, code="") for pid in (1, 2))
        await s.flush()
        for pid in (1, 2):
            s.add(StockBalance(product_id=pid, warehouse_id=1, batch_id=pid, qty=Decimal(2), move_count=2))
        await s.flush()
        days = {1: (2, 1), 2: (1, 2)}  # product 1's second move is older than its first: out of order
        for pid, order in days.items():
            for day in order:
                s.add(StockMove(document_id=1, product_id=pid, warehouse_id=1, batch_id=pid, bucket="stock",
                                qty=Decimal(1), balance_after=Decimal(1),
                                posted_at=datetime(2026, 11, day, 10, tzinfo=UTC)))
                await s.flush()
        await s.execute(update(StockBalance).values(unordered=False))
        await s.execute(text(module.BACKFILL))
        flags = dict((await s.execute(select(StockBalance.product_id, StockBalance.unordered))).all())
    assert flags == {1: True, 2: False}
