"""The benchmark's rolling back-test (core/replenish/simulate.py) replayed on real posted history: static vs dynamic."""

# Same protocol as bench/replenish.py, applied to the ledger's demand matrix instead of a generator (no oracle: the
# true means are unknown):
#
# * Layout: the last `weeks` weeks of the history are the measured test weeks; up to BURN_WEEKS weekly reviews before
#   them warm the inventory up (fewer when the history is short: the first review needs MIN_HISTORY days before it).
#   Reviews every REVIEW (7) days for every product, from the history before each review only.
# * Policies: `static` = the old formula, 28-day sales average × (lead time + review) with SS = average × lead time,
#   on the product master's lead time (what the old system used); `dynamic` = the segmented forecaster (censored days
#   not learned from) with SS = z·√((L+R)σd² + d²σL²) on the lead time learned per supplier, z from the category's
#   service level. Given the promotion calendar, `dynamic` learns the uplift from the promotions before each review and
#   applies it to the promotion days after it (the old formula knows nothing of promotions).
# * Replay: recorded sales are replayed as demand with lost sales; each order arrives after a lead time drawn (fixed
#   seed, so runs repeat) from a lognormal with the learned mean and spread. Both policies see the same draws.
# * Censoring: on a stock-out day (history.py's flag: on hand ≤ 0 at any moment of it) the recorded sales are only a
#   lower bound of demand. Such days are still replayed (with the recorded sales) so inventory flows on, but they are
#   left out of every metric: fill rate, stock-out days and inventory days count uncensored days only, and a 7- or
#   28-day forecast window is scored only when it has no censored day, ends inside the history and follows at least
#   MIN_LEARNED uncensored days. Products without any demand on their uncensored test days are not measured.
# * Fast movers sell > FAST units per uncensored test day.

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.replenish.forecast import ForecastParams
from core.replenish.policy import cover_days
from core.replenish.safety import z_for
from core.replenish.simulate import (
    FAST,
    HORIZON,
    MONTH,
    REVIEW,
    forecast_metrics,
    lead_draws,
    matched,
    policy_targets,
    simulate,
    sweep,
    window_sums,
)

WEEKS = 26  # measured test weeks (the benchmark's too)
BURN_WEEKS = 8  # warm-up reviews before them (at most)
MIN_HISTORY = 28  # days before the first review (the old formula's averaging window)
MIN_LEARNED = 28  # uncensored days before a scored forecast window
LEAD_SEED = 7919


@dataclass(frozen=True)
class Layout:
    """Review columns of the replay: warm-up from `start`, measured days [test_start, test_end)."""

    start: int
    test_start: int
    test_end: int
    burn_weeks: int
    weeks: int

    @property
    def reviews(self) -> list[int]:
        """Review columns, first (warm-up) to last."""
        return list(range(self.start, self.test_end, REVIEW))


@dataclass(frozen=True)
class BacktestResult:
    """Per-policy metrics (same keys as the benchmark's JSON; None where nothing could be measured) and counts."""

    layout: Layout
    products: int  # products measured (demand on some uncensored test day)
    fast_products: int
    scored: int  # scored 28-day windows with demand
    zero_windows: int  # scorable 28-day windows without demand (not in the hit rate)
    censored_windows: int  # 28-day windows left out: censored day inside, not ending in the history, or too little
    censored_days: int  # measured products' test days left out of fill / stock-out / inventory (stock-outs)
    static: dict[str, float | None]
    dynamic: dict[str, float | None]
    inventory_at_matched_fill: float | None = None
    sweep: dict[str, list[dict[str, float | None]]] = field(default_factory=dict)


def layout(days: int, weeks: int = WEEKS, burn_weeks: int = BURN_WEEKS,
           min_history: int = MIN_HISTORY) -> Layout | None:
    """The replay's layout on `days` of history, or None when it cannot hold `weeks` ≥ 1 test weeks after
    min_history days."""
    test_start = days - weeks * REVIEW
    burn = min(burn_weeks, (test_start - min_history) // REVIEW)
    if weeks < 1 or burn < 0:
        return None
    return Layout(test_start - burn * REVIEW, test_start, days, burn, weeks)


def backtest(demand: np.ndarray, stockout: np.ndarray, category_ids: np.ndarray, *, lead_static: np.ndarray,
             lead_mean: np.ndarray, lead_std: np.ndarray, service_level: np.ndarray | float = 0.95,
             start_weekday: int = 0, weeks: int = WEEKS, params: ForecastParams | None = None,
             with_sweep: bool = True, promo: np.ndarray | None = None) -> BacktestResult:
    """Static vs dynamic on the history (see the module notes); ValueError when `layout` finds no room.

    `promo` bool[n, ≥ T] is the promotion calendar from the history's first day (columns past T, e.g. scheduled
    promotions, are kept; missing ones count as no promotion): `dynamic` learns and applies the uplift as it would
    have at each review."""
    y = np.asarray(demand, dtype=float)
    censored = np.asarray(stockout, dtype=bool)
    n, t = y.shape
    lay = layout(t, weeks)
    if lay is None:
        raise ValueError(f"{t} days cannot hold {weeks} test weeks after {MIN_HISTORY} days")
    reviews = lay.reviews
    f = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n,)).astype(float)  # noqa: E731
    if promo is not None:
        promo = np.asarray(promo, dtype=bool)
        need = t + max(HORIZON, MONTH, int(cover_days(f(lead_mean), REVIEW).max(initial=0)))
        if promo.shape[1] < need:
            promo = np.concatenate([promo, np.zeros((n, need - promo.shape[1]), dtype=bool)], axis=1)
    targets = policy_targets(y, censored, promo, category_ids, reviews, f(lead_static), f(lead_mean), f(lead_std),
                             params, start_weekday)
    lead = lead_draws(f(lead_mean), f(lead_std), len(reviews), LEAD_SEED)

    test_days = slice(lay.test_start, lay.test_end)
    clean = ~censored[:, test_days]
    clean_demand = np.where(clean, y[:, test_days], 0.0)
    measured = clean_demand.sum(axis=1) > 0
    scored_days = np.zeros((n, t), dtype=bool)
    scored_days[:, test_days] = clean & measured[:, None]
    clean_days = clean.sum(axis=1)
    fast = measured & (clean_demand.sum(axis=1) > FAST * np.maximum(clean_days, 1))

    learned = np.concatenate([np.zeros((n, 1)), np.cumsum(~censored, axis=1)], axis=1)
    r_idx = np.array(reviews)

    def windows(days: int) -> tuple[np.ndarray, np.ndarray]:
        actual, inside = window_sums(y, reviews, days)
        hit_censor, _ = window_sums(censored.astype(float), reviews, days)
        ok = inside & (hit_censor == 0) & (learned[:, r_idx].T >= MIN_LEARNED) & measured[None, :]
        return actual, ok

    month_actual, month_ok = windows(MONTH)
    week_actual, week_ok = windows(REVIEW)
    test = slice(lay.burn_weeks, lay.burn_weeks + lay.weeks)
    z = z_for(f(service_level))
    levels = {"static": 1.0, "dynamic": z[None, :]}
    result = {}
    for name, tg in targets.items():
        res = simulate(tg.base + levels[name] * tg.unit, y, lead, lay.start, lay.test_start, lay.test_end, scored_days)
        metrics = forecast_metrics(tg, month_actual, week_actual, fast, test, month_ok, week_ok)
        result[name] = {**metrics, **res}
    curves: dict[str, list[dict[str, float | None]]] = {}
    inv_matched = None
    if with_sweep and measured.any():
        curves = sweep(targets, y, lead, lay.start, lay.test_start, lay.test_end, scored_days)
        inv_matched = matched(curves["static"], curves["dynamic"], result["static"])
    ok_t, a_t = month_ok[test], month_actual[test]
    return BacktestResult(
        layout=lay, products=int(measured.sum()), fast_products=int(fast.sum()),
        scored=int((ok_t & (a_t > 0)).sum()), zero_windows=int((ok_t & (a_t <= 0)).sum()),
        censored_windows=int((~ok_t[:, measured]).sum()),
        censored_days=int((~clean[measured]).sum()),
        static=result["static"], dynamic=result["dynamic"], inventory_at_matched_fill=inv_matched, sweep=curves,
    )
