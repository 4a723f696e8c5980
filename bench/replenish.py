"""Replenishment back-test: synthetic demand (research notes §4) and a rolling 26-week static/dynamic/oracle run."""

# The simulation and metrics are core/replenish/simulate.py, the same that `jxcbot replenish backtest` runs on a ledger.

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.report import emit
from core.replenish.backtest import BURN_WEEKS
from core.replenish.backtest import WEEKS as TEST_WEEKS
from core.replenish.forecast import ForecastParams
from core.replenish.plan import PlanInputs, plan
from core.replenish.policy import cover_days, cover_demand
from core.replenish.safety import z_for
from core.replenish.simulate import (
    FAST,
    HORIZON,
    MONTH,
    REVIEW,
    Targets,
    forecast_metrics,
    matched,
    policy_targets,
    simulate,
    window_sums,
)
from core.replenish.simulate import sweep as run_sweep

# ---- the generator: defaults are the research notes' (forecast.md §4); it is the ruler, never tuned ----
VELOCITY_MU, VELOCITY_SIGMA = -0.3, 1.3  # lognormal daily mean → median 0.74/day, 38/48/14 % mix
DOW_BASE = np.array([0.90, 0.85, 0.90, 0.95, 1.05, 1.20, 1.15])  # Mon … Sun
DOW_STRENGTH = 0.6  # per-SKU strength U(0, 0.6): factor = 1 + s·(profile − 1)
SEASON_AMPLITUDE = 0.25  # annual sinusoid amplitude U(0, 0.25), random phase
TREND_SD = 0.2  # log-trend N(0, 0.2) per year
PROMO_SKU_SHARE = 0.30  # share of SKUs with promotions
PROMO_COUNT = (3, 8)  # one-week promotions per 1.5 years (547 days)
PROMO_LIFT = (1.3, 2.5)  # multiplicative lift U(1.3, 2.5) per promotion
LEAD_MEANS = (3, 5, 7, 10, 14)  # supplier mean lead times, days
LEAD_SIGMA = 0.3  # realised lead time = mean × lognormal(0, 0.3), whole days ≥ 1
N_SUPPLIERS = 40
N_CATEGORIES = 12
LEAD_RECEIPTS = 12  # past receipts per supplier the engine learns lead time from
DAYS = 730

# ---- the back-test protocol (forecast.md §5); review, month, fast movers, sweeps: core/replenish/simulate.py;
# test and warm-up weeks (TEST_WEEKS, BURN_WEEKS): core/replenish/backtest.py
SERVICE_LEVEL = 0.95  # the dynamic engine's (and oracle's) default cycle service level
TARGETS = {"hit_gain": 0.04, "fast": {2.0: 0.80, 10.0: 0.88}, "fill": 0.94, "stockout_cut": 0.25,
           "matched": 1.0, "gap_closed": 0.40, "plan_seconds": 1.0}


@dataclass
class Synthetic:
    """A generated panel: true means, realised demand, promotion calendar and supplier lead times."""

    mu: np.ndarray  # float[n, T] true daily mean
    demand: np.ndarray  # float[n, T] realised demand
    promo: np.ndarray  # bool[n, T]
    category: np.ndarray  # int[n]
    lead_nominal: np.ndarray  # float[n] supplier's mean lead time (what the old system used)
    lead_learned: np.ndarray  # float[n] mean of the supplier's past receipts
    lead_learned_std: np.ndarray  # float[n]
    dispersion: float
    seed: int


def lead_sample(rng: np.random.Generator, nominal: np.ndarray | float, size: Any = None) -> np.ndarray:
    """Realised lead times in whole days ≥ 1: nominal × lognormal(0, 0.3)."""
    return np.maximum(1.0, np.round(nominal * rng.lognormal(0.0, LEAD_SIGMA, size)))


def generate(n: int, dispersion: float = 2.0, seed: int = 1, days: int = DAYS) -> Synthetic:
    """Synthetic daily demand for n products over `days` (column 0 is a Monday), per the research notes §4."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    velocity = rng.lognormal(VELOCITY_MU, VELOCITY_SIGMA, n)
    profile = DOW_BASE / DOW_BASE.mean()
    strength = rng.uniform(0, DOW_STRENGTH, n)
    dow = 1 + strength[:, None] * (profile[None, t % 7] - 1)
    amplitude = rng.uniform(0, SEASON_AMPLITUDE, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    season = 1 + amplitude[:, None] * np.sin(2 * np.pi * t[None, :] / 365.25 + phase[:, None])
    trend = np.exp(rng.normal(0, TREND_SD, n)[:, None] * (t[None, :] - days / 2) / 365.25)
    lift = np.ones((n, days))
    promo = np.zeros((n, days), dtype=bool)
    for i in np.flatnonzero(rng.random(n) < PROMO_SKU_SHARE):
        count = max(1, round(rng.integers(PROMO_COUNT[0], PROMO_COUNT[1] + 1) * days / 547))
        for start in rng.integers(0, days - 7, count):
            lift[i, start:start + 7] = np.maximum(lift[i, start:start + 7], rng.uniform(*PROMO_LIFT))
            promo[i, start:start + 7] = True
    mu = velocity[:, None] * dow * season * trend * lift
    demand = rng.poisson(rng.gamma(dispersion, mu / dispersion)).astype(float)
    supplier_lead = rng.choice(np.array(LEAD_MEANS, dtype=float), N_SUPPLIERS)
    receipts = lead_sample(rng, supplier_lead[:, None], (N_SUPPLIERS, LEAD_RECEIPTS))
    supplier = rng.integers(0, N_SUPPLIERS, n)
    return Synthetic(mu, demand, promo, rng.integers(0, N_CATEGORIES, n), supplier_lead[supplier],
                     receipts.mean(axis=1)[supplier], receipts.std(axis=1, ddof=1)[supplier], dispersion, seed)


def generator_stats(g: Synthetic) -> dict[str, Any]:
    """What the ruler looks like: zero product-days, velocity mix (true mean/day), promotion share."""
    v = g.mu.mean(axis=1)
    return {"zero_day_share": round(float((g.demand == 0).mean()), 4),
            "velocity_mix": {"below_0.5": round(float((v < 0.5).mean()), 4),
                             "0.5_to_3": round(float(((v >= 0.5) & (v <= 3)).mean()), 4),
                             "above_3": round(float((v > 3).mean()), 4)},
            "promo_share": round(float(g.promo.mean()), 4),
            "promo_sku_share": round(float(g.promo.any(axis=1).mean()), 4)}


def true_lead(nominal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the realised (rounded) lead time for each nominal value, by a large fixed sample."""
    rng = np.random.default_rng(12345)
    table = {v: lead_sample(rng, v, 400_000) for v in LEAD_MEANS}
    return (np.array([table[v].mean() for v in nominal]), np.array([table[v].std() for v in nominal]))


def build_targets(g: Synthetic, reviews: Sequence[int], params: ForecastParams) -> dict[str, Targets]:
    """Forecasts of the three policies at each review (history before the review only; oracle: true means)."""
    n = g.demand.shape[0]
    promo_ext = np.concatenate([g.promo, np.zeros((n, HORIZON), dtype=bool)], axis=1)
    out = policy_targets(g.demand, None, promo_ext, g.category, reviews, g.lead_nominal, g.lead_learned,
                         g.lead_learned_std, params)
    o = out["oracle"] = Targets(*(np.zeros((len(reviews), n)) for _ in range(4)))
    true_l, true_sd = true_lead(g.lead_nominal)
    days_orc = cover_days(true_l, REVIEW)
    for r, t in enumerate(reviews):
        mu = g.mu[:, t:t + HORIZON]
        cover = cover_demand(mu, days_orc)
        var = cover_demand(mu + mu**2 / g.dispersion, days_orc)
        o.base[r] = cover
        o.unit[r] = np.sqrt(var + (cover / days_orc) ** 2 * true_sd**2)
        o.month[r], o.week[r] = mu[:, :MONTH].sum(axis=1), mu[:, :REVIEW].sum(axis=1)
    return out


def backtest(g: Synthetic, params: ForecastParams | None = None, service_level: float = SERVICE_LEVEL,
             sweep: bool = True) -> dict[str, Any]:
    """The full protocol on one generated panel; result dict as printed by --json."""
    params = params or ForecastParams()
    n, days = g.demand.shape
    test_start = days - MONTH - TEST_WEEKS * REVIEW
    start = test_start - BURN_WEEKS * REVIEW
    test_end = test_start + TEST_WEEKS * REVIEW
    reviews = list(range(start, test_end, REVIEW))
    targets = build_targets(g, reviews, params)
    lead = lead_sample(np.random.default_rng(g.seed + 7919), g.lead_nominal[None, :], (len(reviews), n))
    month_actual, _ = window_sums(g.demand, reviews, MONTH)
    week_actual, _ = window_sums(g.demand, reviews, REVIEW)
    test = slice(BURN_WEEKS, BURN_WEEKS + TEST_WEEKS)
    fast = g.mu[:, test_start:test_end].mean(axis=1) > FAST
    z = float(z_for(service_level))
    result: dict[str, Any] = {}
    for name, tg in targets.items():
        level = 1.0 if name == "static" else z
        res = simulate(tg.base + level * tg.unit, g.demand, lead, start, test_start, test_end)
        result[name] = {**forecast_metrics(tg, month_actual, week_actual, fast, test), **res}
    if sweep:
        curves = run_sweep(targets, g.demand, lead, start, test_start, test_end)
        result["inventory_at_matched_fill"] = matched(curves["static"], curves["dynamic"], result["static"])
        result["sweep"] = curves
    result["fast_share"] = float(fast.mean())
    return result


def time_plan(n: int = 10_000, days: int = DAYS, seed: int = 99) -> float:
    """Seconds for plan() on n products × days of history (forecast, safety stock, rounded suggestion)."""
    g = generate(n, 2.0, seed, days + HORIZON)
    rng = np.random.default_rng(seed)
    inputs = PlanInputs(demand=g.demand[:, :days], category_ids=g.category, lead_mean=g.lead_learned,
                        lead_std=g.lead_learned_std, promo=g.promo, stockout=rng.random((n, days)) < 0.02,
                        on_hand=rng.integers(0, 20, n).astype(float), moq=0.0, pack=1.0, horizon=HORIZON)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        plan(inputs)
        best = min(best, time.perf_counter() - t0)
    return best


def run(seed: int, dispersion: float, skus: int, timing: bool = True) -> dict[str, Any]:
    """Generate, back-test, optionally time plan() on 10k × 730; the --json object."""
    t0 = time.perf_counter()
    g = generate(skus, dispersion, seed)
    result = backtest(g)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["generator"] = generator_stats(g)
    result["params"] = {"seed": seed, "dispersion": dispersion, "skus": skus, "days": DAYS, "review_days": REVIEW,
                        "test_weeks": TEST_WEEKS, "service_level": SERVICE_LEVEL}
    if timing:
        result["plan_seconds_10k"] = round(time_plan(), 3)
    result["targets"] = check(result, dispersion)
    return result


def check(r: dict[str, Any], dispersion: float) -> dict[str, bool | None]:
    """Each target of issue 4 met (True), missed (False) or not measured (None)."""
    s, d, o = r["static"], r["dynamic"], r["oracle"]
    fast_target = TARGETS["fast"].get(dispersion, TARGETS["fast"][2.0])
    gap = o["hit_month"] - s["hit_month"]
    m = r.get("inventory_at_matched_fill")
    p = r.get("plan_seconds_10k")
    return {"hit_gain_4pt": bool(d["hit_month"] >= s["hit_month"] + TARGETS["hit_gain"]),
            f"fast_hit_{fast_target:.2f}": bool(d["hit_month_fast"] >= fast_target),
            "fill_94": bool(d["fill_rate"] >= TARGETS["fill"]),
            "stockout_cut_25": bool(d["stockout_days"] <= (1 - TARGETS["stockout_cut"]) * s["stockout_days"]),
            "matched_inventory": None if m is None else bool(m <= TARGETS["matched"]),
            "gap_closed_40": bool(gap > 0 and (d["hit_month"] - s["hit_month"]) / gap >= TARGETS["gap_closed"]),
            "plan_1s": None if p is None else bool(p <= TARGETS["plan_seconds"])}


def render(r: dict[str, Any]) -> str:
    """Human-readable table."""
    g, p = r["generator"], r["params"]
    mix = g["velocity_mix"]
    lines = [
        f"Replenishment back-test  seed {p['seed']}  dispersion k={p['dispersion']:g}  {p['skus']} SKUs × "
        f"{p['days']} days  weekly review  {p['test_weeks']} test weeks  service level {p['service_level']:.0%}",
        f"Generator: zero product-days {g['zero_day_share']:.1%}  velocity mix <0.5 / 0.5–3 / >3 per day: "
        f"{mix['below_0.5']:.1%} / {mix['0.5_to_3']:.1%} / {mix['above_3']:.1%}  promotion days "
        f"{g['promo_share']:.1%} (SKUs with promotions {g['promo_sku_share']:.1%})  (research: ≈50 %; 38/48/14 %)",
        "",
        f"{'policy':<8} {'hit month':>9} {'fast':>6} {'hit week':>8} {'WAPE':>6} {'bias':>6} {'fill':>6} "
        f"{'stock-out':>9} {'inv days':>8} {'flag 2wk':>8} {'flag TS':>7}",
    ]
    for name in ("static", "dynamic", "oracle"):
        x = r[name]
        lines.append(f"{name:<8} {x['hit_month']:>9.1%} {x['hit_month_fast']:>6.1%} {x['hit_week']:>8.1%} "
                     f"{x['wape']:>6.1%} {x['bias']:>+6.1%} {x['fill_rate']:>6.1%} {x['stockout_days']:>9.2%} "
                     f"{x['inventory_days']:>8.1f} {x['flag_two_weeks']:>8.1%} {x['flag_tracking']:>7.1%}")
    m = r.get("inventory_at_matched_fill")
    s, d, o = r["static"], r["dynamic"], r["oracle"]
    gap = o["hit_month"] - s["hit_month"]
    lines += [
        "",
        f"fast movers (> {FAST:g}/day): {r['fast_share']:.1%} of SKUs",
        f"inventory at matched fill (dynamic ÷ static): {'—' if m is None else f'{m:.3f}'}",
        f"static→oracle monthly-hit gap closed: {(d['hit_month'] - s['hit_month']) / gap:.0%}" if gap > 0 else
        "static→oracle gap: none",
        f"stock-out days vs static: {d['stockout_days'] / s['stockout_days'] - 1:+.0%}" if s["stockout_days"] else "",
    ]
    if "plan_seconds_10k" in r:
        lines.append(f"plan() for 10k products × 730 days: {r['plan_seconds_10k']:.3f} s")
    lines.append("targets: " + "  ".join(f"{k} {'—' if v is None else 'ok' if v else 'MISSED'}"
                                         for k, v in r["targets"].items()))
    lines.append(f"back-test wall time {r['seconds']:.1f} s")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.replenish", description=__doc__)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dispersion", type=float, default=2.0, help="negative-binomial k (2 = stress, 10 = calmer)")
    p.add_argument("--skus", type=int, default=3000)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (the table goes to stderr)")
    p.add_argument("--no-timing", action="store_true", help="skip timing plan() on 10k products × 730 days")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args.seed, args.dispersion, args.skus, timing=not args.no_timing)
    table = render(result)
    emit(table, result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
