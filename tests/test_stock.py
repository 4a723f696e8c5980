"""Stock query: exact-before-fragment product search with LIKE escaping; balances with reservations per warehouse."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from core.errors import DomainError
from core.ledger.documents import create_document, submit_document
from core.ledger.stock import _prefix_end, current_stock, find_products, stock_levels, stock_lookup
from core.models import Product
from tests.factories import line, post, seed

D = Decimal

EXTRA = [
    # (sku, name, barcode)
    ("MILK2", "牛奶饮料", None),
    ("BAG1", "CREAM专用裱花袋", None),
    ("P100", "100%纯牛奶", "6900000000100"),
    ("P100G", "100克奶粉", None),
    ("A_1", "测试甲", None),
    ("AX1", "测试乙", None),
    ("Q1", "奶_酪", None),
    ("Q2", "奶x酪", None),
    ("R1", "反\\斜杠", None),
    ("R2", "反斜杠", None),
]


async def add_products(session, rows=EXTRA) -> None:
    session.add_all(Product(sku=sku, name=name, barcode=barcode, stock_unit="个", purchase_unit="个")
                    for sku, name, barcode in rows)
    await session.flush()


async def skus(session, query: str, **kw) -> list[str]:
    return [p.sku for p in await find_products(session, query, **kw)]


async def test_exact_sku_or_barcode_wins_over_fragment_matches(db):
    async with db.session() as s:
        await seed(s)
        await add_products(s)
        assert await skus(s, "MILK") == ["MILK"]  # not MILK2, although "MILK" is also its SKU prefix
        assert await skus(s, "CREAM") == ["CREAM"]  # not BAG1, although its name contains "CREAM"
        assert await skus(s, " 6900000000011 ") == ["CREAM"]  # barcode, surrounding blanks ignored
        assert await skus(s, "6900000000100") == ["P100"]
        assert await skus(s, "MIL") == ["MILK", "MILK2"]  # SKU prefix, by SKU
        assert await skus(s, "奶") == ["CREAM", "MILK", "MILK2", "P100", "P100G", "Q1", "Q2"]
        assert await skus(s, "REA") == ["BAG1"]  # by its name: SKUs match by prefix only, names anywhere
        assert await skus(s, "ILK") == []
        assert await skus(s, "裱花") == ["BAG1"]
        s.add(Product(sku="NEW1", name="新品", stock_unit="个", purchase_unit="个"))  # pending: autoflushed
        assert await skus(s, "NEW1") == ["NEW1"]
        assert await skus(s, "新") == ["NEW1"]


async def test_like_wildcards_in_the_query_match_literally(db):
    async with db.session() as s:
        await seed(s)
        await add_products(s)
        assert await skus(s, "100%") == ["P100"]  # not 100克奶粉
        assert await skus(s, "%") == ["P100"]
        assert await skus(s, "奶_") == ["Q1"]  # not 奶x酪
        assert await skus(s, "_") == ["Q1"]
        assert await skus(s, "A_") == ["A_1"]  # SKU prefix with ASCII letters: not AX1
        assert await skus(s, "反\\") == ["R1"]
        assert await skus(s, "\\") == ["R1"]
        assert await skus(s, "A%") == []


async def test_fragment_matches_are_limited_and_sorted_by_sku(db):
    async with db.session() as s:
        await seed(s)
        await add_products(s, [(f"B{i:02d}", f"批量商品-{i:02d}", None) for i in range(25, 0, -1)])
        assert await skus(s, "批量") == [f"B{i:02d}" for i in range(1, 21)]
        assert await skus(s, "批量", limit=3) == ["B01", "B02", "B03"]
        assert await skus(s, "B2") == [f"B{i:02d}" for i in range(20, 26)]
        assert await skus(s, "-2") == [f"B{i:02d}" for i in range(20, 26)]


async def test_search_matches_a_reference_implementation(db):
    catalogue = [(f"K{i}-{c}", f"{c}品{i}号{'_%'[i % 2]}", None) for i, c in enumerate("甲乙丙丁戊己庚辛壬癸")]
    async with db.session() as s:
        await seed(s)
        await add_products(s, [*EXTRA, *catalogue])
        products = list(await s.scalars(select(Product)))
        sqlite = db.is_sqlite

        def fold(text: str) -> str:  # SQLite's LIKE ignores the case of ASCII letters only
            return "".join(c.lower() if c.isascii() else c for c in text) if sqlite else text

        def expected(q: str) -> list[str]:
            exact = [p.sku for p in products if q in (p.sku, p.barcode)]
            if exact:
                return sorted(exact)
            return sorted(p.sku for p in products if fold(q) in fold(p.name) or fold(p.sku).startswith(fold(q)))[:20]

        texts = [p.name for p in products] + [p.sku for p in products]
        queries = {t[i:i + n] for t in texts for n in (1, 2, 3) for i in range(len(t) - n + 1)}
        queries |= {"k1", "milk", "Milk2", "\U0010ffff", "号\U0010ffff", "\ud7ff", "-"}
        for q in sorted(queries):
            if q.strip() == q:
                got = sorted(await skus(s, q)) if q in {p.sku for p in products} else await skus(s, q)
                assert got == expected(q), q


def test_prefix_end_is_the_least_string_above_the_prefix():
    assert _prefix_end("SKU0") == "SKU1"
    assert _prefix_end("奶") == chr(ord("奶") + 1)
    assert _prefix_end("a\ud7ff") == "a\ue000"
    assert _prefix_end("a\U0010ffff") is None


async def test_empty_query_is_refused(db):
    async with db.read() as s:
        with pytest.raises(DomainError) as e:
            await find_products(s, " \t ")
    assert e.value.code == "EMPTY_QUERY"


async def _stocked(s, settings) -> None:
    """CREAM 100 in WH1 and 50 in S02; MILK in WH1 in two batches (B2 expires first)."""
    await seed(s)
    await post(s, settings, "purchase_receipt", [line("CREAM", 100, "kg")], warehouse="WH1")
    await post(s, settings, "purchase_receipt", [line("CREAM", 50, "kg")], warehouse="S02")
    soon, later = date.today() + timedelta(days=10), date.today() + timedelta(days=40)
    await post(s, settings, "purchase_receipt",
               [line("MILK", 1, "箱", batch="B1", expiry=later), line("MILK", 2, "箱", batch="B2", expiry=soon)],
               warehouse="WH1")


async def _order(s, settings, customer: str, lines) -> None:
    doc = await create_document(s, settings, "sales_order", lines, warehouse="WH1", customer=customer,
                                delivery_date=date.today() + timedelta(days=3))
    await submit_document(s, settings, doc)


async def test_reserved_quantity_is_per_warehouse_and_counted_once_per_key(db, settings):
    async with db.session() as s:
        await _stocked(s, settings)
        await _order(s, settings, "C1", [line("CREAM", 40, "kg"), line("CREAM", 20, "kg", warehouse="S02"),
                                         line("MILK", 20, "瓶"), line("CREAM", 10, "kg", warehouse="S01")])
        await _order(s, settings, "C2", [line("CREAM", 40, "kg")])  # not strategic: reserves nothing
        draft = await create_document(s, settings, "sales_order", [line("CREAM", 40, "kg")], warehouse="WH1",
                                      customer="C1")
        assert draft.status == "draft"
    async with db.read() as s:
        levels = await stock_levels(s, await find_products(s, "CREAM"))
        # S01 has a reservation but has never held CREAM, so it has no balance and no row
        assert [(r.warehouse, r.warehouse_name, r.on_hand, r.reserved, r.available) for r in levels] == [
            ("S02", "二号门店", D(50), D(3), D(47)),
            ("WH1", "中央仓", D(100), D(6), D(94)),
        ]
        [milk] = await stock_levels(s, await find_products(s, "MILK"))
        assert (milk.on_hand, milk.reserved) == (D(72), D(3))  # two batch rows, one reservation
        assert [(b.batch, b.on_hand) for b in milk.batches] == [("B2", D(48)), ("B1", D(24))]  # by expiry


async def test_warehouse_filter_by_code_or_name_and_unknown_warehouse(db, settings):
    async with db.session() as s:
        await _stocked(s, settings)
        await _order(s, settings, "C1", [line("CREAM", 20, "kg", warehouse="S02")])
    async with db.read() as s:
        cream = await find_products(s, "CREAM")
        for w in ("S02", "二号门店"):
            [row] = await stock_levels(s, cream, w)
            assert (row.warehouse, row.on_hand, row.reserved) == ("S02", D(50), D(3))
        for w in ("WH1", "中央仓"):
            rows = await stock_levels(s, await find_products(s, "奶"), w)
            assert [(r.sku, r.warehouse, r.reserved) for r in rows] == [("CREAM", "WH1", D(0)), ("MILK", "WH1", D(0))]
        assert await stock_levels(s, cream, "S01") == []  # a known warehouse without stock
        at = datetime.now(UTC) + timedelta(minutes=1)
        for kw in ({}, {"at": at}):
            with pytest.raises(DomainError) as e:
                await stock_levels(s, cream, "NOPE", **kw)
            assert e.value.code == "NOT_FOUND" and e.value.fields == {"warehouse": "NOPE"}
            assert "找不到仓库" in e.value.message_zh
        assert await stock_levels(s, [], "NOPE") == []  # nothing to look up, nothing checked
        [row] = await stock_levels(s, cream, "二号门店", at=at)
        assert (row.warehouse, row.on_hand, row.reserved) == ("S02", D(50), D(0))  # no reservations as of a time


async def test_empty_keys_and_batches_are_left_out_unless_reserved(db, settings):
    async with db.session() as s:
        await _stocked(s, settings)
        await post(s, settings, "sales_issue", [line("CREAM", 50, "kg")], warehouse="S02", customer="C2")
        await post(s, settings, "sales_issue", [line("MILK", 48, "瓶", batch="B2")], warehouse="WH1",
                   customer="C2")
        [cream] = await stock_levels(s, await find_products(s, "CREAM"))
        assert cream.warehouse == "WH1"  # S02 is down to zero
        [milk] = await stock_levels(s, await find_products(s, "MILK"))
        assert [(b.batch, b.on_hand) for b in milk.batches] == [("B1", D(24))]
        await _order(s, settings, "C1", [line("CREAM", 20, "kg", warehouse="S02")])
        rows = await stock_levels(s, await find_products(s, "CREAM"))
        assert [(r.warehouse, r.on_hand, r.reserved, r.available) for r in rows] == [
            ("S02", D(0), D(3), D(-3)),
            ("WH1", D(100), D(0), D(100)),
        ]


async def test_stock_levels_takes_orm_products_too(db, settings):
    async with db.session() as s:
        await _stocked(s, settings)
        products = list(await s.scalars(select(Product).where(Product.sku.in_(["MILK", "CREAM"]))))
        rows = await stock_levels(s, products)
        assert [(r.sku, r.warehouse, r.unit) for r in rows] == [("CREAM", "S02", "kg"), ("CREAM", "WH1", "kg"),
                                                                 ("MILK", "WH1", "瓶")]


async def test_one_statement_lookup_equals_find_then_levels(db, settings):
    """stock_lookup (what the stock command runs) gives exactly find_products + stock_levels, filters included."""
    async with db.session() as s:
        await _stocked(s, settings)
        await add_products(s)
        await _order(s, settings, "C1", [line("CREAM", 40, "kg"), line("CREAM", 20, "kg", warehouse="S02"),
                                         line("MILK", 20, "瓶")])
        await post(s, settings, "sales_issue", [line("MILK", 48, "瓶", batch="B2")], warehouse="WH1", customer="C2")
    at = datetime.now(UTC) + timedelta(minutes=1)
    async with db.read() as s:
        for query in ("CREAM", "MILK", "MIL", "奶", "REA", "ILK", "6900000000100", "100%", "奶_酪", "裱花"):
            for warehouse in (None, "WH1", "二号门店", "S01"):
                for when in (None, at):
                    products = await find_products(s, query)
                    levels = await stock_levels(s, products, warehouse, when) if products else []
                    assert await stock_lookup(s, query, warehouse, when) == (products, levels), (query, warehouse)
                    if when is None:  # the chat path: the same statement through db.fetch, without a session
                        assert await current_stock(db, query, warehouse) == (products, levels), (query, warehouse)
        assert (await stock_lookup(s, "奶", limit=2))[0] == (await find_products(s, "奶", limit=2))
        for when in (None, at):
            with pytest.raises(DomainError) as e:
                await stock_lookup(s, "CREAM", "NOPE", when)
            assert e.value.code == "NOT_FOUND"
        with pytest.raises(DomainError) as e:
            await current_stock(db, "CREAM", "NOPE")
        assert e.value.code == "NOT_FOUND"
        assert await current_stock(db, "ILK", "NOPE") == ([], [])
        with pytest.raises(DomainError) as e:
            await current_stock(db, "  ")
        assert e.value.code == "EMPTY_QUERY"
        assert await stock_lookup(s, "ILK", "NOPE") == ([], [])  # nothing found, no warehouse check
        with pytest.raises(DomainError) as e:
            await stock_lookup(s, "  ")
        assert e.value.code == "EMPTY_QUERY"
