"""Replenishment engine: each formula against a hand-computed case, TSB against a scalar reference."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from core.replenish import anchors, flags, policy
from core.replenish.classify import INTERMITTENT, LUMPY, SMOOTH, adi_cv2, classify
from core.replenish.forecast import (
    ForecastParams,
    dow_profile,
    forecast,
    promo_uplift,
    tsb,
    wma_level,
    yoy_level,
)
from core.replenish.plan import PlanInputs, plan
from core.replenish.safety import safety_stock, z_for

# ---- independent scalar references, written from the papers' definitions ----


def tsb_reference(series: list[float], alpha: float, beta: float) -> float:
    """Teunter, Syntetos & Babai (2011): p_t+1 = p_t + β(1 − p_t) if d_t > 0 else (1 − β)p_t;
    z_t+1 = z_t + α(d_t − z_t) if d_t > 0 else z_t; forecast p·z. Initial p, z = frequency and mean size."""
    sizes = [d for d in series if d > 0]
    p = len(sizes) / len(series)
    z = sum(sizes) / len(sizes) if sizes else 0.0
    for d in series:
        if d > 0:
            p = p + beta * (1 - p)
            z = z + alpha * (d - z)
        else:
            p = (1 - beta) * p
    return p * z


def intermittent_rows(seed: int, n: int = 6, t: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, t)) < 0.3, rng.integers(1, 9, (n, t)), 0).astype(float)


# ---- classification ----


def test_adi_cv2_and_classes_by_hand():
    y = np.array([[0, 2, 0, 0, 4, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 9, 0]], dtype=float)
    adi, cv2 = adi_cv2(y)
    assert adi[0] == 3.0  # 6 periods / 2 demands
    assert cv2[0] == pytest.approx(2 / 9)  # sizes 2, 4: sample var 2, mean 3
    assert cv2[2] == pytest.approx(32 / 25)  # sizes 1, 9: var 32, mean 5
    assert list(classify(y)) == [INTERMITTENT, SMOOTH, LUMPY]


# ---- forecasting recursions ----


@pytest.mark.parametrize(("alpha", "beta"), [(0.1, 0.05), (0.3, 0.2), (0.02, 0.01)])
def test_tsb_matches_scalar_reference(alpha, beta):
    y = intermittent_rows(1)
    got = tsb(y, alpha, beta)
    want = [tsb_reference(list(row), alpha, beta) for row in y]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_tsb_rows_without_demand_are_zero_and_leave_the_others_unchanged():
    y = intermittent_rows(2)
    y[::3] = 0.0  # every third row never sold
    ok = np.ones_like(y, dtype=bool)
    ok[1, :30] = False  # and one row censored at the start: its sales after still count
    y[4, 5] = 3.0
    ok[4, 5] = False  # a sale only on a censored day is not learned: that row is zero too
    y[4, np.arange(y.shape[1]) != 5] = 0.0
    got = tsb(y, 0.1, 0.05, ok)
    want = [tsb_reference(list(row[keep]), 0.1, 0.05) for row, keep in zip(y, ok, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert (got[::3] == 0).all() and got[4] == 0 and (got[[1, 2]] > 0).all()


def test_censored_days_are_skipped_not_learned_as_zero():
    y = intermittent_rows(3, n=1)[0]
    ok = np.ones_like(y, dtype=bool)
    ok[40:55] = False
    y_cens = y.copy()
    y_cens[~ok] = 0.0  # out of stock: nothing sold
    assert tsb(y_cens[None], 0.1, 0.05, ok[None])[0] == pytest.approx(tsb_reference(list(y[ok]), 0.1, 0.05))


def test_forecast_level_ignores_stockout_days():
    demand = np.full((1, 112), 2.0)
    stockout = np.zeros((1, 112), dtype=bool)
    stockout[0, -10:] = True
    demand[stockout] = 0.0  # censored sales
    flagged = forecast(demand, stockout, None, np.array([0]), 7)
    blind = forecast(demand, None, None, np.array([0]), 7)
    assert flagged.level[0] == pytest.approx(2.0)
    np.testing.assert_allclose(flagged.daily, 2.0)
    assert blind.level[0] < 1.8  # without the flags the stock-out teaches the engine to under-order


def test_weighted_moving_average_by_hand():
    y = np.array([[1.0] * 7 + [3.0] * 7])
    level = wma_level(y, np.ones_like(y, dtype=bool), np.ones_like(y), weeks=2, decay=0.5)
    assert level[0] == pytest.approx((0.5 * 7 + 3 * 7) / (0.5 * 7 + 7))


def year_over_year_rows() -> np.ndarray:
    # a "year" of 14 days: weeks sell 1, 2 (last year now), 3 (last year's coming week), 4 (this year now)
    return np.array([[1.0] * 7 + [2.0] * 7 + [3.0] * 7 + [4.0] * 7])


def test_year_over_year_estimate_by_hand():
    y = year_over_year_rows()
    ok = np.ones_like(y, dtype=bool)
    ok[0, 16] = False  # a censored day in last year's coming week is skipped, not learned as a zero
    y[0, 16] = 0.0
    rate, var = yoy_level(y, ok, np.ones_like(y), lag=14, days=7, pad=0, growth_days=7, min_days=1.0)
    # growth 4/2 (days 21-27 vs 7-13) × last year's coming week 3 (days 14-20); v = 1/7 + 1/7 + 1/6
    assert rate[0] == pytest.approx(4 / 2 * 3)
    assert var[0] == pytest.approx(1 / 7 + 1 / 7 + 1 / 6)
    short, v_short = yoy_level(y[:, 10:], ok[:, 10:], np.ones((1, 18)), 14, 7, 0, 7, min_days=5.0)
    assert np.isnan(short[0]) and v_short[0] == np.inf  # only 4 recent days have a year-earlier counterpart
    assert np.isnan(yoy_level(y, ok, np.ones_like(y), 14, 7, 0, 7, min_days=8.0)[0][0])  # too few learned days


def test_forecast_combines_recent_level_and_year_over_year_by_inverse_variance():
    y = year_over_year_rows()
    params = ForecastParams(wma_weeks=1, yoy_lag=14, yoy_days=7, yoy_pad=0, yoy_growth_days=7, yoy_min_days=1.0)
    fc = forecast(y, None, None, np.array([0]), 7, params=params)
    # A = last week's 4 over 7 learned days (v_A = 1/7); B = 6 with v_B = 3/7 → w = (1/7)/(4/7) = 1/4
    assert fc.yoy_rate[0] == pytest.approx(6.0)
    assert fc.yoy_weight[0] == pytest.approx(0.25)
    assert fc.level[0] == pytest.approx(4.0 * (6.0 / 4.0) ** 0.25)
    np.testing.assert_allclose(fc.daily[0], fc.level[0])
    off = forecast(y, None, None, np.array([0]), 7, params=ForecastParams(wma_weeks=1, yoy_lag=0))
    assert off.level[0] == pytest.approx(4.0) and off.yoy_weight[0] == 0.0


def test_dow_profile_shrinks_toward_category_by_hand():
    # product 0 sells 7 on Mondays only; product 1 sells 1 every day; one category; one week; shrink a = 1
    y = np.array([[7.0, 0, 0, 0, 0, 0, 0], [1.0] * 7])
    f = dow_profile(y, np.ones_like(y, dtype=bool), np.arange(7), np.array([5, 5]), shrink=1.0)
    # category rates [8, 1, …] / mean 2 → g = [4, .5, …]; f = 7(S_d + g_d)/(7 + 7)
    np.testing.assert_allclose(f[0], [5.5] + [0.25] * 6)
    np.testing.assert_allclose(f[1], 7 * (1 + np.array([4] + [0.5] * 6)) / 14)
    np.testing.assert_allclose(f.sum(axis=1), 7.0)


def test_promo_uplift_shrinks_toward_category_by_hand():
    t = 56
    promo = np.zeros((2, t), dtype=bool)
    promo[:, 21:28] = True
    y = np.array([np.where(promo[0], 6.0, 2.0), np.where(promo[1], 1.5, 1.0)])  # own uplift 3 and 1.5
    u = promo_uplift(y, np.ones_like(promo), promo, np.ones_like(y), np.array([1, 1]), 28, 14.0)
    u_cat = (42 + 10.5) / (14 + 7)  # pooled promotion sales over pooled baseline = 2.5
    np.testing.assert_allclose(u, [(7 * 3 + 14 * u_cat) / 21, (7 * 1.5 + 14 * u_cat) / 21])


def test_future_promotion_days_get_the_uplift():
    t, h = 112, 14
    promo = np.zeros((1, t + h), dtype=bool)
    promo[0, 50:57] = True
    promo[0, t + 3:t + 5] = True
    demand = np.where(promo[:, :t], 4.0, 2.0)
    fc = forecast(demand, None, promo, np.array([0]), h, params=ForecastParams(uplift_prior_days=0.0))
    assert fc.uplift[0] == pytest.approx(2.0)
    np.testing.assert_allclose(fc.daily[0], np.where(promo[0, t:], 4.0, 2.0))


# ---- safety stock, rounding, position ----


def test_safety_stock_by_hand():
    assert float(z_for(0.95)) == pytest.approx(1.6448536, abs=1e-6)
    # L 4, R 7, σd 2, d 3, σL 1: √(11·4 + 9·1) = √53
    assert float(safety_stock(z_for(0.95), 3.0, 2.0, 4.0, 1.0, 7.0)) == pytest.approx(1.6448536 * 53**0.5, rel=1e-6)
    with pytest.raises(ValueError):
        z_for(1.0)


@pytest.mark.parametrize(("need", "moq", "pack", "want"), [
    (0.0, 0.0, 1.0, 0.0), (-3.0, 10.0, 1.0, 0.0), (5.0, 0.0, 12.0, 12.0), (13.0, 0.0, 12.0, 24.0),
    (24.0, 0.0, 6.0, 24.0), (3.0, 10.0, 1.0, 10.0), (3.0, 10.0, 4.0, 12.0), (24.0000000001, 0.0, 1.0, 24.0),
    (0.2, 0.0, 0.5, 0.5),
])
def test_moq_and_pack_rounding(need, moq, pack, want):
    assert float(policy.round_to_pack(np.array([need]), moq, pack)[0]) == want


def test_cover_days_round_half_up():
    assert list(policy.cover_days(np.array([3.4, 3.5, 0.0]), 7.0)) == [10, 11, 7]


def small_inputs(**kw) -> PlanInputs:
    rng = np.random.default_rng(7)
    n, t = 5, 140
    demand = rng.poisson(rng.uniform(0.2, 6, n)[:, None], (n, t)).astype(float)
    base = dict(demand=demand, category_ids=np.array([0, 0, 1, 1, 1]), lead_mean=np.array([3.0, 5, 7, 10, 14]),
                lead_std=1.0, on_hand=np.array([0.0, 10, 3, 50, 2]), on_order=np.array([0.0, 4, 0, 0, 1]),
                requested=np.array([0.0, 2, 0, 0, 0]), reserved=np.array([0.0, 5, 1, 0, 0]),
                moq=np.array([0.0, 0, 10, 0, 0]), pack=np.array([1.0, 6, 1, 12, 0.5]))
    return PlanInputs(**(base | kw))


def test_reservation_is_an_allocation_not_a_forecast_change():
    a = plan(small_inputs(reserved=0.0))
    b = plan(small_inputs(reserved=np.array([5.0, 5, 5, 5, 5])))
    np.testing.assert_array_equal(a.daily, b.daily)
    np.testing.assert_array_equal(a.safety_stock, b.safety_stock)
    np.testing.assert_allclose(b.projected, a.projected - 5)
    assert b.projected[1] == 10 + 4 + 2 - 5
    np.testing.assert_allclose(np.maximum(b.order_up_to - b.projected, 0), b.need)
    assert (b.need >= a.need).all() and (b.need[a.need > 0] - a.need[a.need > 0] == pytest.approx(5.0))


def test_strategies_static_and_fixed():
    inp = small_inputs(strategy=["dynamic", "static", "fixed", "static", "dynamic"], fixed_safety=7.0)
    p = plan(inp)
    rate = inp.demand[1, -28:].mean()
    np.testing.assert_allclose(p.daily[1], rate)
    assert p.safety_stock[1] == pytest.approx(rate * 5.0)  # the old formula: average daily sales × lead time
    assert p.order_up_to[1] == pytest.approx(rate * 12 + rate * 5)
    assert p.safety_stock[2] == 7.0
    assert p.explain(1).method == "static-average"
    with pytest.raises(ValueError):
        plan(small_inputs(strategy="guess"))


# ---- anchors ----


def test_anchor_blend_cap_damp_and_small_changes():
    blended, w = anchors.blend(np.array([10.0, 10, 10, 10]), np.array([20.0, 6, 10.5, np.nan]), 0.9)
    # upward: weight capped at 0.5 then damped × 0.75; downward: capped 0.5; +5 % change ignored; NaN = none
    np.testing.assert_allclose(w, [0.375, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(blended, [13.75, 8.0, 10.0, 10.0])
    blended, w = anchors.blend(np.array([10.0]), np.array([6.0]), 0.3)
    assert blended[0] == pytest.approx(8.8)


def test_anchor_needs_a_reason_and_is_logged():
    stat, manual = np.array([2.0, 3.0]), np.array([np.nan, 6.0])
    with pytest.raises(ValueError, match="reason"):
        anchors.apply_anchors(stat, manual, 0.5, [None, " "])
    blended, _used, log = anchors.apply_anchors(stat, manual, 0.5, [None, "new store opens"])
    assert blended[0] == 2.0 and blended[1] == pytest.approx(3 + 0.375 * 3)
    assert log == [anchors.Override(1, 3.0, 6.0, 0.5, 0.375, blended[1], "new store opens")]


def test_fva_by_hand():
    # stat misses by 4 + 2, final by 1 + 2 over actual 20 → (6 − 3)/20
    assert anchors.fva(np.array([10.0, 10]), np.array([14.0, 8]), np.array([11.0, 8])) == pytest.approx(0.15)


def test_plan_applies_anchor_to_level():
    inp = small_inputs(anchor_rate=np.array([np.nan, 20.0, np.nan, np.nan, np.nan]),
                       anchor_reason=[None, "trade fair"])
    p = plan(inp)
    ref = plan(small_inputs())
    [over] = p.overrides
    w = over.weight_used
    assert over.index == 1
    assert w == pytest.approx(0.375)
    want = ref.forecast.level[1] + w * (20.0 - ref.forecast.level[1])
    np.testing.assert_allclose(p.daily[1], ref.daily[1] * want / ref.forecast.level[1])
    np.testing.assert_array_equal(p.daily[[0, 2, 3, 4]], ref.daily[[0, 2, 3, 4]])
    assert p.explain(1).anchor is not None and p.explain(1).anchor.reason == "trade fair"


# ---- explanation ----


def test_explanation_fields_compose_to_the_suggestion():
    p = plan(small_inputs(strategy=["dynamic", "dynamic", "fixed", "static", "dynamic"], fixed_safety=3.3))
    assert (p.suggested > 0).sum() >= 3
    for i in range(5):
        e = p.explain(i)
        assert len(e.forecast) == e.cover_days
        assert sum(e.forecast) == pytest.approx(e.cover_demand, abs=1e-9)
        assert e.cover_demand + e.safety_stock == pytest.approx(e.order_up_to, abs=1e-9)
        assert e.on_hand + e.on_order + e.requested - e.reserved == pytest.approx(e.projected, abs=1e-9)
        assert max(0.0, e.order_up_to - e.projected) == pytest.approx(e.need, abs=1e-9)
        assert e.need + e.rounding == pytest.approx(e.suggested, abs=1e-9)
        assert e.suggested == p.suggested[i]
        d = e.as_decimal()
        assert all(isinstance(v, Decimal) for v in d.forecast)
        assert sum(d.forecast, Decimal(0)) == d.cover_demand
        assert d.cover_demand + d.safety_stock == d.order_up_to
        assert d.on_hand + d.on_order + d.requested - d.reserved == d.projected
        assert max(Decimal(0), d.order_up_to - d.projected) == d.need
        assert d.need + d.rounding == d.suggested
        assert d.suggested == Decimal(repr(float(p.suggested[i]))).quantize(Decimal("0.000001"))
        if d.suggested:
            assert d.suggested % d.pack == 0


# ---- flags ----


def test_flags_tracking_signal_and_two_week_rule():
    forecast_ = np.full((3, 8), 10.0)
    actual = np.array([[5.0, 6, 4, 5, 6, 5, 4, 5],  # persistent over-forecast → drift
                       [5.0, 15, 5, 15, 5, 15, 5, 15],  # unbiased but noisy
                       [10.0, 10, 10, 10, 10, 10, 14, 14]])  # last two weeks 29 % off
    ts = flags.tracking_signal(forecast_, actual)
    assert ts[0] == pytest.approx(40 / (0.5 * 8**0.5))  # e = 5,4,6,5,4,5,6,5: Σ 40, mean |e − 5| = 0.5
    assert list(flags.flag(forecast_, actual)) == [True, False, False]
    assert list(flags.flag(forecast_, actual, "two_weeks")) == [True, True, True]
    assert list(flags.flag_two_weeks(forecast_[:, :6], actual[:, :6])) == [True, True, False]
    with pytest.raises(ValueError):
        flags.flag(forecast_, actual, "vibes")
