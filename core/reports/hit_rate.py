"""The purchase-suggestion hit-rate board (the seed's 采购建议命中率): per product and week, the suggested purchase
quantity against the actual consumption, the deviation rate, and the products off by more than 25% two weeks
running (the seed's advice: check the MOQ and the purchase unit in the product master).

Suggestions are not stored, so each week's is recomputed: the replenishment engine's plan() over the posted history
up to that week's Monday (HISTORY_DAYS days, the engine's default; anchors and promotions as the engine reads them),
its forecast for the week's 7 days, rounded as the engine rounds a purchase (up to the MOQ, then whole packs). The
engine's position-netted suggestion is not used: it depends on the stock and open orders of that Monday, which the
ledger does not keep, and on stock rather than on consumption. Consumption is the engine's demand: posted sales
issues less their returns, per local day. deviation = |suggested − consumed| ÷ consumed (none when nothing was
consumed but something was suggested: counted as off)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import select

from core.config import Settings
from core.models import Product
from core.replenish.explain import to_dec
from core.replenish.history import DEFAULT_HISTORY_DAYS, Window, daily_demand, lead_times, load_history
from core.replenish.plan import plan
from core.replenish.policy import round_to_pack
from core.replenish.suggest import plan_inputs
from core.storage import Database

LIMIT = Decimal("0.25")
HISTORY_DAYS = DEFAULT_HISTORY_DAYS
ADVICE_ZH = "连续2周偏差>25%：请重检商品主数据中的「最小起订量」和「采购单位」设置"
SOURCE_ZH = ("建议量为按周一之前的历史重算的补货引擎预测（当周 7 天预测量按最小起订量、包装规格向上取整）；"
             "系统未保存当时的建议，且当时的库存与在途无法还原，因此不用扣减库存后的建议采购量")
Heavy = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class WeekFigures:
    """One product's week: suggested and consumed (stock units) and the deviation (None: consumed nothing)."""

    suggested: Decimal
    consumed: Decimal

    @property
    def deviation(self) -> Decimal | None:
        """|suggested − consumed| ÷ consumed."""
        if self.consumed <= 0:
            return None if self.suggested > 0 else Decimal(0)
        return abs(self.suggested - self.consumed) / self.consumed

    @property
    def off(self) -> bool:
        """Deviation over 25% (or something suggested for nothing consumed)."""
        d = self.deviation
        return d is None or d > LIMIT


@dataclass(frozen=True)
class BoardRow:
    """One product on the board: last week, the week before, and its master data the advice points at."""

    sku: str
    name: str
    unit: str
    week: WeekFigures
    before: WeekFigures
    moq: Decimal
    pack: Decimal
    purchase_unit: str
    purchase_factor: int

    @property
    def flagged(self) -> bool:
        """Off by more than 25% both weeks."""
        return self.week.off and self.before.off


@dataclass(frozen=True)
class HitBoard:
    """The board for the week starting `monday` (compared with the week before)."""

    monday: date
    rows: list[BoardRow]

    @property
    def hit_rate(self) -> Decimal | None:
        """Share of the products on the board within 25% last week."""
        return Decimal(sum(1 for r in self.rows if not r.week.off)) / len(self.rows) if self.rows else None

    @property
    def flagged(self) -> list[BoardRow]:
        """Products off by more than 25% two weeks running."""
        return [r for r in self.rows if r.flagged]


def week_suggestion(inputs: Any) -> np.ndarray:
    """The engine's forecast for the 7 days from the plan's today, rounded to MOQ and packs (CPU: a worker thread)."""
    if not len(inputs.demand):
        return np.zeros(0)
    result = plan(inputs)
    return round_to_pack(result.daily[:, :7].sum(axis=1), inputs.moq, inputs.pack)


def _by_id(ids: np.ndarray, qty: np.ndarray) -> dict[int, Decimal]:
    return {int(pid): to_dec(q) for pid, q in zip(ids.tolist(), qty.tolist(), strict=True)}


async def _figures(db: Database, settings: Settings, monday: date, heavy: Heavy) -> tuple[dict[int, Decimal], ...]:
    """Suggested and consumed per product, for the week from `monday` and the week before, from one read of the
    ledger: HISTORY_DAYS + 7 days ending the Sunday before `monday` hold both weeks' histories (a day's demand and
    stock-out do not depend on the window around it) and the week before's consumption; the week's consumption is
    its 7 days of demand."""
    tz = settings.timezone
    before = monday - timedelta(days=7)
    async with db.read() as s:
        wide = await load_history(s, today=monday, tz=tz, days=HISTORY_DAYS + 7)
        lead_before = await lead_times(s, wide.index, before, tz)
        weeks = [(wide.sliced(7, HISTORY_DAYS), monday), (wide.sliced(0, HISTORY_DAYS, lead_before), before)]
        inputs = [(await plan_inputs(s, h, today))[0] for h, today in weeks]
        used = await daily_demand(s, wide.index, Window(monday, 7, tz)) if len(wide.index) else np.zeros((0, 7))
    ids = wide.index.ids
    sug, sug_before = [_by_id(ids, await heavy(week_suggestion, i)) for i in inputs]
    return sug, sug_before, _by_id(ids, used.sum(axis=1)), _by_id(ids, wide.demand[:, -7:].sum(axis=1))


async def hit_board(db: Database, settings: Settings, monday: date, heavy: Heavy = asyncio.to_thread) -> HitBoard:
    """The board of the week starting `monday` and the week before it (one ledger read, two engine plans, each in
    `heavy`)."""
    sug, sug_before, used, used_before = await _figures(db, settings, monday, heavy)
    zero = Decimal(0)
    ids = {pid for pid in set(sug) | set(used) if sug.get(pid, zero) > 0 or used.get(pid, zero) > 0}
    async with db.read() as s:
        products = {p.id: p for p in await s.scalars(select(Product).where(Product.id.in_(ids or {0})))} \
            if len(ids) <= 5000 else {p.id: p for p in await s.scalars(select(Product))}
    rows = []
    for pid in ids:
        p = products.get(pid)
        if p is None:
            continue
        rows.append(BoardRow(p.sku, p.name, p.stock_unit, WeekFigures(sug.get(pid, zero), used.get(pid, zero)),
                             WeekFigures(sug_before.get(pid, zero), used_before.get(pid, zero)), p.moq,
                             p.pack_size, p.purchase_unit, p.purchase_factor))
    rows.sort(key=lambda r: (not r.flagged, -(r.week.deviation if r.week.deviation is not None else Decimal(10**9)),
                             r.sku))
    return HitBoard(monday, rows)
