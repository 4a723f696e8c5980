"""Purchase suggestions from the ledger: history + category strategies + anchors + promotions → plan() → Decimals."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings, load_config
from core.errors import DomainError
from core.replenish import backtest
from core.replenish.anchors_db import month_anchors, month_days
from core.replenish.explain import Explanation
from core.replenish.forecast import HORIZON
from core.replenish.history import DEFAULT_HISTORY_DAYS, History, load_history
from core.replenish.plan import PlanInputs, plan
from core.replenish.promotions_db import promo_matrix
from core.replenish.strategies_db import DEFAULT, Strategy, strategies
from core.storage import Database


@dataclass(frozen=True)
class Suggestion:
    """One product's suggested purchase in stock units with the explanation behind it (Decimals)."""

    sku: str
    name: str
    unit: str
    qty: Decimal  # rounded to MOQ / pack; 0 = no purchase needed
    explanation: Explanation  # as_decimal(): its fields sum exactly to qty
    buffer_days: Decimal  # product buffer days included in review_days
    lead_learned: bool  # lead time learned from receipts (else the product's lead_time_days)
    censored_days: int  # stock-out days in the history, not learned from
    auto_replenish: bool


async def build_inputs(session: AsyncSession, settings: Settings, *, today: date, warehouse: str | None = None,
                       days: int = DEFAULT_HISTORY_DAYS) -> tuple[History, PlanInputs, list[Strategy]]:
    """The ledger as PlanInputs (one read session): history, each product's category strategy, this month's anchors
    and the promotion calendar (see plan_inputs)."""
    h = await load_history(session, today=today, tz=settings.timezone, days=days, warehouse=warehouse)
    inputs, chosen = await plan_inputs(session, h, today)
    return h, inputs, chosen


async def plan_inputs(session: AsyncSession, h: History, today: date) -> tuple[PlanInputs, list[Strategy]]:
    """A history as PlanInputs for a plan made on `today`: each product's category strategy, the anchors of today's
    month and the promotion calendar. Review days are the category's plus the product's buffer days. ``promo``
    covers the history days and the `horizon` days from today: past promotions teach the uplift, scheduled ones
    apply it."""
    by_category = await strategies(session)
    chosen = [by_category.get(c, DEFAULT) for c in h.index.categories]
    n = len(h.index)
    review = np.array([s.review_days for s in chosen], dtype=float) + h.index.buffer_days
    anchors = await month_anchors(session, today.replace(day=1))
    rate = np.full(n, np.nan)
    weight = np.zeros(n)
    reasons: list[str | None] = [None] * n
    for i, pid in enumerate(h.index.ids.tolist()):
        a = anchors.get(pid)
        if a is not None:
            rate[i] = float(a.qty) / month_days(a.month)
            weight[i] = float(a.weight_cap)
            reasons[i] = a.reason
    longest = float((h.lead.mean + review).max()) if n else 0.0
    horizon = max(HORIZON, math.ceil(longest) + 1)
    promo = await promo_matrix(session, h.index, h.window.start, h.window.days + horizon)
    inputs = PlanInputs(
        demand=h.demand, stockout=h.stockout, promo=promo, category_ids=h.index.category_ids(),
        lead_mean=h.lead.mean, lead_std=h.lead.std, review_days=review,
        service_level=np.array([float(s.service_level) for s in chosen]),
        on_hand=h.position.on_hand, on_order=h.position.on_order, requested=h.position.requested,
        reserved=h.position.reserved, moq=h.index.moq, pack=h.index.pack,
        strategy=[s.strategy for s in chosen],
        fixed_safety=np.array([float(s.fixed_qty or 0) for s in chosen]),
        start_weekday=h.window.start.weekday(), horizon=horizon,
        anchor_rate=rate, anchor_weight=weight, anchor_reason=reasons,
    )
    return inputs, chosen


async def suggest(db: Database, *, today: date, warehouse: str | None = None, settings: Settings | None = None,
                  days: int = DEFAULT_HISTORY_DAYS, everything: bool = False,
                  auto_only: bool = False) -> list[Suggestion]:
    """Suggested purchases per product (only those above zero unless `everything`; only auto_replenish products if
    `auto_only`: the plan still covers every product, as the category statistics pool them), largest first, with
    the why."""
    settings = settings or load_config(None, env={})
    async with db.read() as session:
        h, inputs, _chosen = await build_inputs(session, settings, today=today, warehouse=warehouse, days=days)
    if not len(h.index):
        return []
    # numpy work (about half a second for 10k products): off the event loop
    return await asyncio.to_thread(_suggestions, h, inputs, everything, auto_only)


def _suggestions(h: History, inputs: PlanInputs, everything: bool, auto_only: bool = False) -> list[Suggestion]:
    """plan() and the explanations as Suggestions, largest first (CPU only: runs in a worker thread)."""
    result = plan(inputs)
    out = []
    for i in range(len(h.index)):
        if (not everything and result.suggested[i] <= 0) or (auto_only and not h.index.auto_replenish[i]):
            continue
        why = result.explain(i).as_decimal()
        out.append(Suggestion(
            sku=h.index.skus[i], name=h.index.names[i], unit=h.index.units[i],
            qty=why.suggested, explanation=why, buffer_days=Decimal(int(h.index.buffer_days[i])),
            lead_learned=bool(h.lead.learned[i]), censored_days=int(h.stockout[i].sum()),
            auto_replenish=bool(h.index.auto_replenish[i]),
        ))
    out.sort(key=lambda s: (-s.qty, s.sku))
    return out


async def backtest_history(db: Database, *, today: date, warehouse: str | None = None,
                           settings: Settings | None = None, days: int = DEFAULT_HISTORY_DAYS,
                           weeks: int = backtest.WEEKS) -> backtest.BacktestResult:
    """The benchmark's rolling back-test (static vs dynamic, lost-sales replay) on the posted history ending
    yesterday, lead times as learned per supplier, service levels from the category strategies, promotion days from the
    calendar; DomainError when the
    history is too short or nothing could be measured (see core/replenish/backtest.py)."""
    settings = settings or load_config(None, env={})
    need = backtest.MIN_HISTORY + backtest.REVIEW
    if weeks < 1:
        raise DomainError("BAD_WEEKS", f"回测周数 {weeks} 必须至少为 1", "例如 --weeks 26")
    if backtest.layout(days, weeks) is None:
        raise DomainError("SHORT_HISTORY", f"历史天数 {days} 不足以回测 {weeks} 周",
                          f"回测至少需要 {backtest.MIN_HISTORY} 天历史再加上回测的周数（每周 7 天），"
                          f"例如 {need} 天回测 1 周，建议 364 天回测 26 周")
    async with db.read() as session:
        h, inputs, _chosen = await build_inputs(session, settings, today=today, warehouse=warehouse, days=days)
    result = None
    if len(h.index):
        result = await asyncio.to_thread(  # the replay is seconds of numpy: off the event loop
            backtest.backtest, h.demand, h.stockout, inputs.category_ids, lead_static=h.index.lead_time_days,
            lead_mean=h.lead.mean, lead_std=h.lead.std, service_level=inputs.service_level,
            start_weekday=h.window.start.weekday(), weeks=weeks, promo=inputs.promo)
    if result is None or not result.scored or result.static["fill_rate"] is None:
        raise DomainError(
            "SHORT_HISTORY", "已过账的销售历史不足，无法回测",
            f"回测需要商品在回测期内有货且有销售，评估窗口（{backtest.MONTH} 天）内一直有货，并且此前至少有 "
            f"{backtest.MIN_LEARNED} 天有货的历史；请积累更多已过账的销售出库后再试",
            {} if result is None else {"censored_windows": result.censored_windows,
                                       "zero_windows": result.zero_windows})
    return result
