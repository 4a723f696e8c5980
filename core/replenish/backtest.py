"""Rolling-origin back-test of the forecaster on real history: static vs dynamic, monthly ±25 % hit, WAPE, bias."""

# Same definitions as bench/replenish.py, applied to the user's own posted history instead of a generator:
# at each weekly origin both policies forecast the next WINDOW (28) days from the history before it — static
# is the old formula's plain 28-day average, dynamic the segmented forecaster (censored days not learned
# from). A window is scored only when the product had stock on every day of it (a censored window's sales
# are not its demand) and at least MIN_LEARNED uncensored days before the origin; windows without demand are
# counted apart, not scored (a ±25 % hit is undefined on zero). Fast movers sell > FAST units/day over the
# scored windows.

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.replenish.forecast import ForecastParams, forecast
from core.replenish.policy import static_rate

WINDOW = 28
STEP = 7
WEEKS = 26
MIN_LEARNED = 28
FAST = 3.0
HIT_TOLERANCE = 0.25


@dataclass(frozen=True)
class PolicyScore:
    """Forecast accuracy of one policy over the scored windows (None where nothing could be scored)."""

    hit_month: float | None
    hit_month_fast: float | None
    wape: float | None
    bias: float | None


@dataclass(frozen=True)
class BacktestResult:
    """Scores of both policies with the counts behind them."""

    origins: int
    products: int  # products with at least one scored window
    scored: int  # scored (product, origin) windows with demand
    fast_scored: int
    zero_windows: int  # scorable windows without any demand (not in the hit rate)
    censored_windows: int  # windows left out: stock-out days inside, or too little history before
    static: PolicyScore
    dynamic: PolicyScore


def origins(days: int, weeks: int = WEEKS, window: int = WINDOW, step: int = STEP,
            min_learned: int = MIN_LEARNED) -> list[int]:
    """Origin columns (the first forecast day), latest last: up to `weeks` weekly origins whose window ends in
    the history and that leave min_learned days before them."""
    last = days - window
    return [o for o in range(last - step * (weeks - 1), last + 1, step) if o >= min_learned]


def _score(f: np.ndarray, a: np.ndarray, fast: np.ndarray) -> PolicyScore:
    if a.size == 0:
        return PolicyScore(None, None, None, None)
    hits = np.abs(f - a) <= HIT_TOLERANCE * a
    total = a.sum()
    return PolicyScore(float(hits.mean()), float(hits[fast].mean()) if fast.any() else None,
                       float(np.abs(f - a).sum() / total), float((f - a).sum() / total))


def backtest(demand: np.ndarray, stockout: np.ndarray, category_ids: np.ndarray, start_weekday: int = 0,
             weeks: int = WEEKS, params: ForecastParams | None = None) -> BacktestResult:
    """Score static and dynamic 28-day forecasts at weekly origins over the history (see the module notes)."""
    y = np.asarray(demand, dtype=float)
    censored = np.asarray(stockout, dtype=bool)
    n, t = y.shape
    cols = origins(t, weeks)
    learned = np.concatenate([np.zeros((n, 1)), np.cumsum(~censored, axis=1)], axis=1)
    cum_y = np.concatenate([np.zeros((n, 1)), np.cumsum(y, axis=1)], axis=1)
    cum_c = np.concatenate([np.zeros((n, 1)), np.cumsum(censored, axis=1)], axis=1)
    f_static, f_dyn, actual, ok = (np.zeros((len(cols), n)) for _ in range(4))
    for k, o in enumerate(cols):
        f_static[k] = static_rate(y[:, :o]) * WINDOW
        fc = forecast(y[:, :o], censored[:, :o], None, category_ids, WINDOW, start_weekday, params)
        f_dyn[k] = fc.daily.sum(axis=1)
        actual[k] = cum_y[:, o + WINDOW] - cum_y[:, o]
        ok[k] = (cum_c[:, o + WINDOW] == cum_c[:, o]) & (learned[:, o] >= MIN_LEARNED)
    ok_b = ok.astype(bool)
    scored = ok_b & (actual > 0)
    days_scored = scored.sum(axis=0) * WINDOW
    rate = np.divide(np.where(scored, actual, 0.0).sum(axis=0), days_scored, out=np.zeros(n), where=days_scored > 0)
    fast = np.broadcast_to(rate > FAST, scored.shape)[scored]
    a = actual[scored]
    return BacktestResult(
        origins=len(cols), products=int(scored.any(axis=0).sum()), scored=int(scored.sum()),
        fast_scored=int(fast.sum()), zero_windows=int((ok_b & (actual <= 0)).sum()),
        censored_windows=int((~ok_b).sum()),
        static=_score(f_static[scored], a, fast), dynamic=_score(f_dyn[scored], a, fast),
    )
