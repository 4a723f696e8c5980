"""Policy-agnostic back-test machinery: order-up-to targets per review, lost-sales (R,S) replay and its metrics."""

# Shared by the synthetic benchmark (bench/replenish.py) and the back-test on the ledger (core/replenish/backtest.py):
# at each weekly review a policy gives an order-up-to level S = base + z·unit and its forecasts of the next 7 and 28
# days; simulate() replays demand against those levels with lost sales and pre-drawn lead times; forecast_metrics()
# scores the 28-day forecasts (±25 % monthly hit, WAPE, bias). Optional masks leave out what cannot be scored on real
# data (censored windows and days); without masks every window and day counts, as on the generator.

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.replenish import flags
from core.replenish.forecast import HORIZON, ForecastParams, forecast
from core.replenish.policy import cover_days, cover_demand, static_rate

REVIEW = 7  # weekly review, same day for every product
MONTH = 28  # "monthly" hit window (4 whole weeks)
HIT_TOLERANCE = 0.25
FAST = 3.0  # fast movers: > 3 units/day
Z_SWEEP = (-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
STATIC_SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # multiplier on the old formula's safety stock d̄·L


@dataclass
class Targets:
    """One policy's order-up-to ingredients at every review: S(z) = base + z·unit, and its forecasts."""

    base: np.ndarray  # float[J, n]
    unit: np.ndarray  # float[J, n]
    month: np.ndarray  # float[J, n] forecast of the next 28 days
    week: np.ndarray  # float[J, n] forecast of the next 7 days


def policy_targets(demand: np.ndarray, stockout: np.ndarray | None, promo: np.ndarray | None,
                   category_ids: np.ndarray, reviews: Sequence[int], lead_static: np.ndarray, lead_mean: np.ndarray,
                   lead_std: np.ndarray, params: ForecastParams | None = None, start_weekday: int = 0,
                   horizon: int = HORIZON) -> dict[str, Targets]:
    """`static` (28-day average; SS = d̄·L on the lead time the old system used) and `dynamic` (the segmented
    forecaster on learned lead times) at each review, from the history before it only. `promo`, when given, has
    at least max(reviews) + horizon columns; censored (`stockout`) days are not learned from by `dynamic`."""
    y = np.asarray(demand, dtype=float)
    n, j = y.shape[0], len(reviews)
    out = {name: Targets(*(np.zeros((j, n)) for _ in range(4))) for name in ("static", "dynamic")}
    days_static = cover_days(lead_static, REVIEW)
    days_dyn = cover_days(lead_mean, REVIEW)
    horizon = max(horizon, MONTH, int(days_dyn.max(initial=0)))
    for r, t in enumerate(reviews):
        rate = static_rate(y[:, :t])
        s = out["static"]
        s.base[r], s.unit[r] = rate * days_static, rate * lead_static
        s.month[r], s.week[r] = rate * MONTH, rate * REVIEW

        fc = forecast(y[:, :t], None if stockout is None else stockout[:, :t],
                      None if promo is None else promo[:, :t + horizon], category_ids, horizon, start_weekday, params)
        d = out["dynamic"]
        cover = cover_demand(fc.daily, days_dyn)
        d.base[r] = cover
        d.unit[r] = np.sqrt((lead_mean + REVIEW) * fc.sigma**2 + (cover / days_dyn) ** 2 * lead_std**2)
        d.month[r], d.week[r] = fc.daily[:, :MONTH].sum(axis=1), fc.daily[:, :REVIEW].sum(axis=1)
    return out


def simulate(up_to: np.ndarray, demand: np.ndarray, lead: np.ndarray, start: int, test_start: int,
             test_end: int, scored: np.ndarray | None = None) -> dict[str, float | None]:
    """Lost-sales (R,S) run: review every REVIEW days from `start`, order ⌈S − on hand − on order⌉⁺ arriving after
    the pre-drawn lead time; measures fill rate, stock-out days (closing stock 0) and inventory over the test days.

    `scored` (bool[n, days]) limits the measured product-days (e.g. to uncensored ones); demand is replayed on every
    day either way. Fill rate and inventory days are None when no measured day had demand."""
    n = demand.shape[0]
    rows = np.arange(n)
    on_hand = np.ceil(np.maximum(up_to[0], 0))
    on_order = np.zeros(n)
    arrivals = np.zeros((n, demand.shape[1] + int(lead.max(initial=1)) + 1))
    served = wanted = out_days = stock = 0.0
    counted = 0
    for day in range(start, test_end):
        on_hand += arrivals[:, day]
        on_order -= arrivals[:, day]
        if (day - start) % REVIEW == 0:
            r = (day - start) // REVIEW
            q = np.ceil(np.maximum(up_to[r] - on_hand - on_order, 0) - 1e-9)
            np.add.at(arrivals, (rows, day + lead[r].astype(int)), q)
            on_order += q
        opening = on_hand.copy()
        sales = np.minimum(on_hand, demand[:, day])
        on_hand -= sales
        if day >= test_start:
            if scored is None:
                served += sales.sum()
                wanted += demand[:, day].sum()
                out_days += (on_hand <= 0).sum()
                stock += (opening + on_hand).sum() / 2
            else:
                m = scored[:, day]
                served += sales[m].sum()
                wanted += demand[m, day].sum()
                out_days += (on_hand[m] <= 0).sum()
                stock += (opening[m] + on_hand[m]).sum() / 2
                counted += int(m.sum())
    if scored is None:
        counted = n * (test_end - test_start)
    return {"fill_rate": float(served / wanted) if wanted else None,
            "stockout_days": float(out_days / counted) if counted else None,
            "inventory_days": float(stock / wanted) if wanted else None}


def hit(forecast_: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """|F − A| ≤ 25 % of A, on windows with demand (zero windows are reported separately)."""
    return np.abs(forecast_ - actual) <= HIT_TOLERANCE * actual


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def forecast_metrics(tg: Targets, month_actual: np.ndarray, week_actual: np.ndarray, fast: np.ndarray,
                     test: slice, month_ok: np.ndarray | None = None,
                     week_ok: np.ndarray | None = None) -> dict[str, float | None]:
    """Monthly hit rate (all / fast movers), WAPE and bias of the 28-day forecasts, weekly hit and flag rates.

    `month_ok` / `week_ok` (bool[J, n]) leave windows out of the hit rates, WAPE and bias (None where nothing is
    left); the drift-flag rates are over all weeks."""
    f, a = tg.month[test], month_actual[test]
    okm = np.ones(a.shape, dtype=bool) if month_ok is None else month_ok[test]
    pos = a > 0
    fw, aw = tg.week[test].T, week_actual[test].T  # [n, weeks]
    okw = np.ones(aw.shape, dtype=bool) if week_ok is None else week_ok[test].T
    weeks = fw.shape[1]
    two = (float(np.mean([flags.flag_two_weeks(fw[:, w - 1:w + 1], aw[:, w - 1:w + 1]).mean()
                          for w in range(1, weeks)])) if weeks > 1 else None)
    track = (float(np.mean([flags.flag_tracking(fw[:, w - 7:w + 1], aw[:, w - 7:w + 1]).mean()
                            for w in range(7, weeks)])) if weeks > 7 else None)
    a_ok = np.where(okm, a, 0.0)
    total = a_ok.sum()
    return {"hit_month": _mean(hit(f, a)[pos & okm]),
            "hit_month_fast": _mean(hit(f, a)[pos & okm & fast[None, :]]),
            "hit_week": _mean(hit(fw, aw)[(aw > 0) & okw]),
            "zero_month_share": _mean((~pos)[okm]),
            "wape": float(np.where(okm, np.abs(f - a), 0.0).sum() / total) if total > 0 else None,
            "bias": float(np.where(okm, f - a, 0.0).sum() / total) if total > 0 else None,
            "flag_two_weeks": two, "flag_tracking": track}


def window_sums(demand: np.ndarray, reviews: Sequence[int], days: int) -> tuple[np.ndarray, np.ndarray]:
    """(float[J, n] demand over [review, review + days), bool[J, n] whether the window ends inside the history)."""
    n, t = demand.shape
    csum = np.concatenate([np.zeros((n, 1)), np.cumsum(demand, axis=1)], axis=1)
    r_idx = np.array(reviews, dtype=np.int64)
    end = np.minimum(r_idx + days, t)
    return (csum[:, end] - csum[:, r_idx]).T, np.broadcast_to((r_idx + days <= t)[:, None], (len(r_idx), n))


def matched(static_curve: list[dict[str, float | None]], dynamic_curve: list[dict[str, float | None]],
            static_point: dict[str, float | None]) -> float | None:
    """Dynamic inventory at the static policy's fill rate (interpolated on the z sweep) ÷ static inventory."""
    pts = sorted((c["fill_rate"], c["inventory_days"]) for c in dynamic_curve
                 if c["fill_rate"] is not None and c["inventory_days"] is not None)
    fill, inv_static = static_point["fill_rate"], static_point["inventory_days"]
    if not pts or fill is None or not inv_static:
        return None
    fills = [p[0] for p in pts]
    if not fills[0] <= fill <= fills[-1]:
        return None
    inv = float(np.interp(fill, fills, [p[1] for p in pts]))
    return inv / inv_static


def sweep(targets: dict[str, Targets], demand: np.ndarray, lead: np.ndarray, start: int, test_start: int,
          test_end: int, scored: np.ndarray | None = None) -> dict[str, list[dict[str, float | None]]]:
    """Fill rate and inventory of static (× STATIC_SWEEP on its safety stock) and dynamic (z in Z_SWEEP)."""
    return {name: [simulate(targets[name].base + v * targets[name].unit, demand, lead, start, test_start, test_end,
                            scored) | {"z": v} for v in values]
            for name, values in (("static", STATIC_SWEEP), ("dynamic", Z_SWEEP))}


def lead_draws(mean: np.ndarray, std: np.ndarray, reviews: int, seed: int = 0) -> np.ndarray:
    """Lead times in whole days ≥ 1 for each review and product, lognormal with the given mean and spread."""
    mean = np.maximum(np.asarray(mean, dtype=float), 1e-9)
    s2 = np.log1p(np.square(np.asarray(std, dtype=float) / mean))
    rng = np.random.default_rng(seed)
    draws = mean * np.exp(rng.normal(0.0, 1.0, (reviews, len(mean))) * np.sqrt(s2) - s2 / 2)
    return np.maximum(1.0, np.round(draws))
