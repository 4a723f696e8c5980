"""The bundled bakery-chain demo: masters and opening stock from CSV, a year of history, the last 30 days' stories."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.errors import DomainError
from core.importer.demo_approvals import seed_pending
from core.importer.demo_history import (
    HISTORY_DAYS,
    STORES,
    DemoHistory,
    Fixed,
    canonical_batches,
    redate_opening,
    seed_preorders,
)
from core.importer.demo_purchase import seed_purchases
from core.importer.parsing import _bool, _date
from core.importer.reading import _read_table, _Row, _Table
from core.importer.results import ImportFailed, RowError
from core.importer.rowcheck import _Cells
from core.importer.run import _import_table
from core.importer.specs import _EXTRA_COLUMNS, COLUMNS
from core.ledger.documents import LineInput, create_document, post_document, submit_document
from core.models import Customer, Product, Supplier, utcnow

DEMO_DIR = Path(__file__).parent.parent / "demo"


def _add_years(d: date, years: int) -> date:
    return (d.replace(day=28) if (d.month, d.day) == (2, 29) else d).replace(year=d.year + years)


def _shift_years(table: _Table, today: date, margin_days: int = 30) -> _Table:
    """Move the demo's fixed expiry dates forward by whole years until they are all well in the future."""
    dates = [_date(r.values["expiry"]) for r in table.rows if r.values.get("expiry")]
    years = 0
    while dates and min(_add_years(d, years) for d in dates) < today + timedelta(days=margin_days):
        years += 1
    if not years:
        return table
    rows = [
        _Row(r.row, {**r.values, "expiry": _add_years(_date(r.values["expiry"]), years).isoformat()})
        if r.values.get("expiry") else r
        for r in table.rows
    ]
    return _Table(table.columns, rows)


def _simple_records(kind: str, table: _Table) -> list[dict[str, Any]]:
    errors: list[RowError] = []
    out = []
    for row in table.rows:
        c = _Cells(kind, row, errors)
        rec: dict[str, Any] = {"code": c.text("code"), "name": c.text("name")}
        if kind == "customers":
            rec["strategic"] = bool(c.parse("strategic", _bool))
        out.append(rec)
    if errors:
        raise ImportFailed(errors)
    return out


async def load_demo(session: AsyncSession, settings: Settings, *, now: datetime | None = None) -> None:
    """Load the bundled bakery-chain demo: masters, opening stock posted 395 days ago, a year of daily history
    around the last 30 days' documents, pre-orders, and the sign-offs and purchases waiting."""
    if await session.scalar(select(Product.id).limit(1)) is not None:
        raise DomainError("DEMO_NOT_EMPTY", "数据库中已有商品，演示数据只能载入空库",
                          "请用 jxcbot demo 新建一个演示库")
    now = now or utcnow()
    tz = settings.timezone
    local_today = now.astimezone(tz).date()

    def at(days_ago: int, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(local_today - timedelta(days=days_ago), time(hour, minute), tz)

    def table(kind: str, name: str) -> _Table:
        return _read_table(COLUMNS.get(kind) or _EXTRA_COLUMNS[kind], DEMO_DIR / name)

    for kind in ("users", "warehouses", "products"):
        await _import_table(session, settings, kind, await asyncio.to_thread(table, kind, f"{kind}.csv"),
                            post=True, progress=None, now=None)
    for kind, model in (("customers", Customer), ("suppliers", Supplier)):
        recs = _simple_records(kind, await asyncio.to_thread(table, kind, f"{kind}.csv"))
        session.add_all(model(**r) for r in recs)
    await session.flush()
    opening = _shift_years(await asyncio.to_thread(table, "opening", "opening.csv"), local_today)
    canonical = canonical_batches(opening)
    await _import_table(session, settings, "opening", redate_opening(opening, ("CW", *STORES)), post=True,
                        progress=None, now=at(HISTORY_DAYS, 8))

    def exp(days: int) -> date:
        return local_today + timedelta(days=days)

    def ln(sku: str, qty: int | str, unit: str, **kw: Any) -> LineInput:
        return LineInput(sku=sku, qty=Decimal(str(qty)), unit=unit, **kw)

    fixed: list[tuple[datetime, str, list[LineInput], bool, dict[str, Any]]] = []

    def doc(when: datetime, doc_type: str, lines: list[LineInput], *, post: bool = True, **kw: Any) -> None:
        fixed.append((when, doc_type, lines, post, kw))

    day = "%m%d"
    doc(at(27, 9), "purchase_receipt", [
        ln("RM-CREAM", 20, "桶", batch=f"CR{at(27, 9):{day}}A", expiry=exp(150), unit_price="450", tax_rate="0.13"),
        ln("RM-MILK", 15, "箱", batch=f"ML{at(27, 9):{day}}A", expiry=exp(120), unit_price="96", tax_rate="0.13"),
    ], warehouse="CW", supplier="SUP01", created_by="王库管", note="乳品周补货")
    doc(at(25, 14), "transfer", [
        ln("RM-MILK", 2, "箱"), ln("RM-CREAM", 20, "kg"), ln("RM-FLOUR-HI", 2, "袋"), ln("PK-BOX6", 100, "个"),
    ], warehouse="CW", to_warehouse="S01", created_by="王库管", note="观前街店周末备货")
    doc(at(21, 10), "sales_issue", [
        ln("FG-COOKIE", 5, "箱", unit_price="816"), ln("FG-NUT", 40, "袋", unit_price="28"),
    ], warehouse="CW", customer="C001", created_by="赵销售", note="园区科技下午茶礼盒")
    doc(at(18, 9, 30), "purchase_receipt", [
        ln("RM-FLOUR-HI", 40, "袋", unit_price="150", tax_rate="0.09"),
        ln("RM-FLOUR-LOW", 20, "袋", unit_price="140", tax_rate="0.09"),
        ln("RM-SUGAR", 10, "袋", unit_price="165", tax_rate="0.13"),
    ], warehouse="CW", supplier="SUP02", created_by="王库管", note="粮油月度采购")
    doc(at(14, 15), "borrow", [ln("PK-BOX8", 60, "个"), ln("PK-CANDLE", 30, "盒")],
        warehouse="CW", customer="C003", created_by="孙销售", due_date=local_today - timedelta(days=2),
        note="婚庆活动借用蛋糕盒和蜡烛，活动后归还")
    doc(at(11, 10), "sales_issue", [ln("FG-MOONCAKE", 60, "盒", unit_price="168")],
        warehouse="CW", customer="C002", created_by="赵销售", note="平江路咖啡馆寄售礼盒")
    doc(at(8, 8, 30), "purchase_receipt", [
        ln("RM-EGG", 4, "箱", batch=f"EG{at(8, 8):{day}}A", expiry=exp(25), unit_price="260", tax_rate="0.09"),
        ln("PK-BOX6", 5, "箱", unit_price="150", tax_rate="0.13"),
    ], warehouse="CW", supplier="SUP03", created_by="王库管", note="鸡蛋与包材补货")
    doc(at(6, 16), "sales_issue", [ln("FG-COOKIE", 24, "盒", unit_price="68")],
        warehouse="S06", customer="C004", created_by="周店长", note="会展中心茶歇")
    doc(at(4, 11), "transfer", [ln("RM-EGG", 1, "箱"), ln("RM-BUTTER", 10, "kg")],
        warehouse="CW", to_warehouse="S06", created_by="刘库管", note="金鸡湖店补货")
    doc(at(2, 10), "sales_issue", [ln("FG-MOONCAKE", 10, "箱", unit_price="1344"),
                                   ln("RM-CREAM", 30, "kg", unit_price="52")],
        warehouse="CW", customer="C001", created_by="赵销售", note="园区科技年会订货")
    doc(at(1, 17), "sales_order", [ln("FG-MOONCAKE", 8, "箱", unit_price="1344")], post=False,
        warehouse="CW", customer="C001", created_by="赵销售", delivery_date=local_today + timedelta(days=5),
        note="园区科技预订：5 天后送货")

    # A year of daily documents around these (core/importer/demo_history.py), then these as they were.
    history = DemoHistory(session, settings, now, canonical, [
        Fixed(when, doc_type, kw["warehouse"], kw.get("to_warehouse"), lines)
        for when, doc_type, lines, _post, kw in fixed])
    await history.start()
    for when, doc_type, lines, post, kw in fixed:
        await history.until(when + timedelta(hours=1) if post else when)
        await history.cover(Fixed(when, doc_type, kw["warehouse"], kw.get("to_warehouse"), lines))
        d = await create_document(session, settings, doc_type, lines, now=when, **kw)
        await submit_document(session, settings, d, now=when + timedelta(minutes=20))
        if post:
            await post_document(session, settings, d, now=when + timedelta(hours=1))
        await history.sync()
    await history.finish()
    await seed_preorders(session, settings, now)
    await seed_pending(session, settings, now)
    await seed_purchases(session, settings, now)
