"""Baseline rate (DOW-weighted moving average or TSB) × shrunk day-of-week profile × shrunk promotion uplift.

Year-over-year combination (smooth/erratic rows with more than a year of history): the recent weighted level A
lags a seasonal swing, so it is combined with a second estimate aimed at the coming ``yoy_days`` days,

    B = (this year's rate over the growth window ÷ the rate over the same days 52 weeks earlier)
        × last year's rate over the coming window ± ``yoy_pad`` days,

i.e. last year's demand around the coming weeks scaled by the measured year-over-year growth (rates are sales ÷
weekday-expected learned days, promotion and stock-out days excluded; the growth window is the last
``yoy_growth_days`` days that have a year-earlier counterpart). The two are averaged in logs by inverse variance,
level = A·(B/A)^w with w = v_A/(v_A + v_B), each variance taken as 1/(effective learned days) per window
(v_A from the moving-average weights; v_B = 1/n_growth + 1/n_year_earlier + 1/n_coming). With a full history
w ≈ ½; thin or censored windows move the weight toward the better-measured estimate, and a row lacking
``yoy_min_days`` learned days in any window keeps A.

Arrays: ``demand`` float[n, T] (history, column T-1 is yesterday), ``stockout`` bool[n, T] (censored days,
never learned from), ``promo`` bool[n, T + H] (promotion calendar, future columns included). Weekdays are
0 = Monday; ``start_weekday`` is the weekday of column 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.replenish.classify import classify

WMA, TSB = 0, 1
METHOD_NAMES = ("dow-wma", "tsb")
HORIZON = 42  # default forecast horizon in days (six weeks: the 28-day month and most lead + review covers)


@dataclass(frozen=True)
class ForecastParams:
    """Forecaster constants (tuned on the synthetic back-test, see bench/replenish.py)."""

    wma_weeks: int = 8  # weekly totals in the weighted moving average
    wma_decay: float = 0.85  # weight λ^k of the week k weeks back
    dow_weeks: int = 26  # weeks behind the day-of-week profile
    dow_shrink: float = 14.0  # pseudo-units per weekday pulling the profile toward the category's
    tsb_alpha: float = 0.02  # TSB smoothing of the demand size
    tsb_beta: float = 0.01  # TSB smoothing of the demand probability
    tsb_days: int = 364  # days the TSB recursion runs over (initialised from their averages)
    classify_days: int = 182  # days behind ADI / CV²
    uplift_days: int = 728  # days searched for past promotions
    uplift_halfwidth: int = 28  # days either side giving a promotion day its non-promotion baseline
    uplift_prior_days: float = 14.0  # n0: promotion days the category's uplift counts as
    sigma_days: int = 91  # days behind the residual standard deviation
    yoy_lag: int = 364  # days back to "the same time last year" (52 whole weeks; 0 = no year-over-year estimate)
    yoy_days: int = 28  # the coming days the year-over-year estimate aims at
    yoy_pad: int = 56  # days either side of last year's coming window (smooths last year's single realisation;
    # 14/28/42/56/70 tried on back-test seeds 101–103: 56 best, 28 costs ~1 point of fast-mover monthly hit)
    yoy_growth_days: int = 364  # at most this many recent days (with a year-earlier counterpart) measure growth
    yoy_min_days: float = 28.0  # learned (weekday-expected) days each window needs before the estimate is used


@dataclass
class Forecast:
    """Per-product forecast parts; ``daily`` = level · dow[weekday] · (uplift on promotion days)."""

    level: np.ndarray  # float[n]: baseline units/day (no promotion, weekday-neutral)
    dow: np.ndarray  # float[n, 7]: weekday factors (mean 1), index 0 = Monday
    uplift: np.ndarray  # float[n]: multiplier on promotion days (shrunk toward the category)
    sigma: np.ndarray  # float[n]: std of daily demand around the forecast
    segment: np.ndarray  # int8[n]: classify.SMOOTH … LUMPY
    method: np.ndarray  # int8[n]: WMA or TSB
    daily: np.ndarray  # float[n, H]: forecast for today (column 0) … today + H - 1
    promo_future: np.ndarray  # bool[n, H]: promotion calendar over the horizon
    yoy_rate: np.ndarray | None = None  # float[n]: year-over-year estimate B (NaN where not used)
    yoy_weight: np.ndarray | None = None  # float[n]: weight w of B in the level (0 where not used)


def weekdays(start_weekday: int, start: int, count: int) -> np.ndarray:
    """Weekday (0 = Monday) of columns start … start + count - 1 when column 0 falls on start_weekday."""
    return (start_weekday + start + np.arange(count)) % 7


def dow_profile(y: np.ndarray, ok: np.ndarray, wd: np.ndarray, category_ids: np.ndarray, shrink: float) -> np.ndarray:
    """f_d = 7·(S_d + a·g_d)/(S + 7a): weekday sales S_d (per learned day) shrunk toward the category profile g."""
    n = y.shape[0]
    sums = np.zeros((n, 7))
    counts = np.zeros((n, 7))
    yo = np.where(ok, y, 0.0)
    for d in range(7):
        cols = wd == d
        sums[:, d] = yo[:, cols].sum(axis=1)
        counts[:, d] = ok[:, cols].sum(axis=1)
    rate = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    scaled = rate * counts.mean(axis=1, keepdims=True)  # S_d as if every weekday had the same learned days
    cats, inv = np.unique(category_ids, return_inverse=True)
    cat_rate = np.zeros((len(cats), 7))
    np.add.at(cat_rate, inv, rate)
    cat_mean = cat_rate.mean(axis=1, keepdims=True)
    g = np.divide(cat_rate, cat_mean, out=np.ones_like(cat_rate), where=cat_mean > 0)[inv]
    return 7.0 * (scaled + shrink * g) / (scaled.sum(axis=1, keepdims=True) + 7.0 * shrink)


def wma_level(y: np.ndarray, ok: np.ndarray, f: np.ndarray, weeks: int, decay: float) -> np.ndarray:
    """Σ λ^k·W_k / Σ λ^k·E_k over the last `weeks` whole weeks: sales over weekday-expected learned days."""
    t = y.shape[1]
    span = min(t, weeks * 7)
    age = (span - 1 - np.arange(span)) // 7
    w = decay**age
    ys, oks, fs = y[:, t - span:], ok[:, t - span:], f[:, t - span:]
    num = (np.where(oks, ys, 0.0) * w).sum(axis=1)
    den = (np.where(oks, fs, 0.0) * w).sum(axis=1)
    return np.divide(num, den, out=np.zeros(y.shape[0]), where=den > 0)


def window_rate(y: np.ndarray, ok: np.ndarray | None, f: np.ndarray, lo: int, hi: int,
                weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rate Σw·y/Σw·f, Σw·f, effective days (Σw·f)²/Σ(w·f)²) over learned columns lo … hi-1, clipped to the array.

    ok = None means y and f are already zero on unlearned days.
    """
    t = y.shape[1]
    a, b = max(lo, 0), min(hi, t)
    ys, fs = y[:, a:b], f[:, a:b]
    if ok is not None:
        ys, fs = np.where(ok[:, a:b], ys, 0.0), np.where(ok[:, a:b], fs, 0.0)
    if weights is not None:
        w = np.asarray(weights, dtype=float)[a - lo:b - lo]
        ys, fs = ys * w, fs * w
    num, den = ys.sum(axis=1), fs.sum(axis=1)
    sq = np.einsum("ij,ij->i", fs, fs)
    rate = np.divide(num, den, out=np.zeros(len(den)), where=den > 0)
    return rate, den, np.divide(den * den, sq, out=np.zeros(len(den)), where=sq > 0)


def yoy_level(y: np.ndarray, ok: np.ndarray, f: np.ndarray, lag: int, days: int, pad: int, growth_days: int,
              min_days: float) -> tuple[np.ndarray, np.ndarray]:
    """(B, v_B) per row, see the module doc: growth × last year's rate around the coming `days`; v_B = Σ 1/n_eff.

    Column T-1 is yesterday. Rows where a window has fewer than `min_days` learned days, or no sales in it, get
    B = NaN and v_B = inf.
    """
    n, t = y.shape
    g0 = max(t - growth_days, lag)
    if t - g0 <= 0:
        return np.full(n, np.nan), np.full(n, np.inf)
    lo = max(g0 - lag, 0)
    yo = np.where(ok[:, lo:], y[:, lo:], 0.0)
    fo = np.where(ok[:, lo:], f[:, lo:], 0.0)
    now, n_now, e_now = window_rate(yo, None, fo, g0 - lo, t - lo)
    then, n_then, e_then = window_rate(yo, None, fo, g0 - lag - lo, t - lag - lo)
    ahead, n_ahead, e_ahead = window_rate(yo, None, fo, t - lag - pad - lo, t - lag + days + pad - lo)
    good = (np.minimum(np.minimum(n_now, n_then), n_ahead) >= min_days) & (now > 0) & (then > 0) & (ahead > 0)
    rate = np.full(n, np.nan)
    rate[good] = now[good] * ahead[good] / then[good]
    var = np.full(n, np.inf)
    var[good] = 1 / e_now[good] + 1 / e_then[good] + 1 / e_ahead[good]
    return rate, var


def tsb(y: np.ndarray, alpha: float, beta: float, ok: np.ndarray | None = None) -> np.ndarray:
    """Teunter–Syntetos–Babai: p += β(1[y>0] − p) every learned period, z += α(y − z) on demand periods; → p·z.

    p and z start at the window's demand frequency and mean non-zero size; unlearned (censored) periods hold them.
    """
    y = np.asarray(y, dtype=float)
    ok = np.ones(y.shape, dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
    nz = (y > 0) & ok
    n_ok = ok.sum(axis=1)
    n_nz = nz.sum(axis=1)
    p = np.divide(n_nz, n_ok, out=np.zeros(y.shape[0]), where=n_ok > 0)
    z = np.divide(np.where(nz, y, 0.0).sum(axis=1), n_nz, out=np.zeros(y.shape[0]), where=n_nz > 0)
    # A row without a learned demand day starts at p = 0 and stays there (every update is β·(0 − p)): its
    # forecast is 0 without the recursion, which then runs on the other rows only.
    rows = np.flatnonzero(n_nz > 0)
    if len(rows) < y.shape[0]:
        out = np.zeros(y.shape[0])
        if len(rows):
            out[rows] = tsb(y[rows], alpha, beta, ok[rows])
        return out
    yt = np.ascontiguousarray(y.T)
    okt = np.ascontiguousarray(ok.T, dtype=float) * beta
    nzt = np.ascontiguousarray(nz.T, dtype=float)
    az = nzt * alpha
    for i in range(yt.shape[0]):
        p += okt[i] * (nzt[i] - p)
        z += az[i] * (yt[i] - z)
    return p * z


def promo_uplift(
    y: np.ndarray, ok: np.ndarray, promo: np.ndarray, f: np.ndarray, category_ids: np.ndarray,
    halfwidth: int, prior_days: float,
) -> np.ndarray:
    """û = (n·u + n0·u_cat)/(n + n0): u = promotion sales ÷ the non-promotion rate around those days (±halfwidth)."""
    n, t = y.shape
    learn = ok & promo
    has = learn.any(axis=1)
    num = np.zeros(n)
    den = np.zeros(n)
    days = np.zeros(n)
    if has.any():
        rows = np.flatnonzero(has)
        yb, fb, base = y[rows], f[rows], ok[rows] & ~promo[rows]
        cy = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(np.where(base, yb, 0.0), axis=1)], axis=1)
        cf = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(np.where(base, fb, 0.0), axis=1)], axis=1)
        lo = np.clip(np.arange(t) - halfwidth, 0, t)
        hi = np.clip(np.arange(t) + halfwidth + 1, 0, t)
        around_y = cy[:, hi] - cy[:, lo]
        around_f = cf[:, hi] - cf[:, lo]
        rate = np.divide(around_y, around_f, out=np.zeros_like(around_y), where=around_f > 0)
        lp = learn[rows] & (around_f > 0)
        num[rows] = np.where(lp, yb, 0.0).sum(axis=1)
        den[rows] = np.where(lp, rate * fb, 0.0).sum(axis=1)
        days[rows] = lp.sum(axis=1)
    cats, inv = np.unique(category_ids, return_inverse=True)
    cnum = np.bincount(inv, num, len(cats))
    cden = np.bincount(inv, den, len(cats))
    pooled = num.sum() / den.sum() if den.sum() > 0 else 1.0
    ucat = np.divide(cnum, cden, out=np.full(len(cats), pooled), where=cden > 0)[inv]
    own = np.divide(num, den, out=np.zeros(n), where=den > 0)
    return (days * own + prior_days * ucat) / (days + prior_days)


def forecast(
    demand: np.ndarray, stockout: np.ndarray | None, promo: np.ndarray | None, category_ids: np.ndarray,
    horizon: int, start_weekday: int = 0, params: ForecastParams | None = None,
) -> Forecast:
    """Segmented forecast for every row: DOW-WMA level for smooth/erratic rows, TSB for ADI ≥ 1.32; see module doc."""
    p = params or ForecastParams()
    y = np.asarray(demand, dtype=float)
    n, t = y.shape
    ok = np.ones((n, t), dtype=bool) if stockout is None else ~np.asarray(stockout, dtype=bool)
    promo_all = np.zeros((n, t + horizon), dtype=bool) if promo is None else np.asarray(promo, dtype=bool)
    if promo_all.shape != (n, t + horizon):
        raise ValueError(f"promo must have shape {(n, t + horizon)}, got {promo_all.shape}")
    promo_hist, promo_future = promo_all[:, :t], promo_all[:, t:]
    cats = np.asarray(category_ids)
    base = ok & ~promo_hist  # days that teach the baseline

    wd = weekdays(start_weekday, 0, t)
    dspan = min(t, p.dow_weeks * 7)
    dow = dow_profile(y[:, t - dspan:], base[:, t - dspan:], wd[t - dspan:], cats, p.dow_shrink)
    # Factor of every history day, needed by the level, uplift and residuals (only the spans they read).
    span = min(t, max(p.wma_weeks * 7, p.tsb_days, p.uplift_days, p.sigma_days, p.classify_days,
                      2 * p.yoy_lag if p.yoy_lag else 0))
    f_hist = dow[:, wd[t - span:]]
    ys, bs, ps, oks = y[:, t - span:], base[:, t - span:], promo_hist[:, t - span:], ok[:, t - span:]

    cspan = min(span, p.classify_days)
    segment = classify(ys[:, span - cspan:], bs[:, span - cspan:])
    adi_high = segment >= 2
    level = wma_level(ys, bs, f_hist, p.wma_weeks, p.wma_decay)
    wspan = min(span, p.wma_weeks * 7)
    wweights = p.wma_decay ** ((wspan - 1 - np.arange(wspan)) // 7)
    method = np.where(adi_high, TSB, WMA).astype(np.int8)
    if adi_high.any():
        tspan = min(span, p.tsb_days)
        rows = np.flatnonzero(adi_high)
        level[rows] = tsb(ys[rows, span - tspan:], p.tsb_alpha, p.tsb_beta, bs[rows, span - tspan:])

    recent = level.copy()  # A: the residuals below measure noise around what the recent data say
    yoy_rate = np.full(n, np.nan)
    yoy_weight = np.zeros(n)
    if p.yoy_lag and span > p.yoy_lag:
        yoy_rate, v_yoy = yoy_level(ys, bs, f_hist, p.yoy_lag, p.yoy_days, p.yoy_pad, p.yoy_growth_days,
                                    p.yoy_min_days)
        _, _, e_level = window_rate(ys, bs, f_hist, span - wspan, span, wweights)
        v_level = np.divide(1.0, e_level, out=np.full(n, np.inf), where=e_level > 0)
        use = ~adi_high & np.isfinite(yoy_rate) & (level > 0) & np.isfinite(v_level)
        yoy_weight[use] = v_level[use] / (v_level[use] + v_yoy[use])
        level[use] *= (yoy_rate[use] / level[use]) ** yoy_weight[use]
        yoy_rate[~use] = np.nan

    uspan = min(span, p.uplift_days)
    uplift = promo_uplift(ys[:, span - uspan:], oks[:, span - uspan:], ps[:, span - uspan:], f_hist[:, span - uspan:],
                          cats, p.uplift_halfwidth, p.uplift_prior_days)

    sspan = min(span, p.sigma_days)
    sb = bs[:, span - sspan:]
    resid = np.where(sb, ys[:, span - sspan:] - recent[:, None] * f_hist[:, span - sspan:], 0.0)
    dof = np.maximum(sb.sum(axis=1) - 1, 1)
    # Poisson floor: a short run of zeros must not claim a certain demand.
    sigma = np.sqrt(np.maximum((resid * resid).sum(axis=1) / dof, level))

    f_future = dow[:, weekdays(start_weekday, t, horizon)]
    level_today = np.maximum(level, 0.0)
    daily = level_today[:, None] * f_future * np.where(promo_future, uplift[:, None], 1.0)
    return Forecast(level_today, dow, uplift, sigma, segment, method, daily, promo_future, yoy_rate, yoy_weight)
