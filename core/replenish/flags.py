"""Forecast-drift flags: tracking signal (default) and the legacy "off by > 25 % two weeks running" rule.

The legacy rule fires on about a quarter of product-weeks even for a forecaster that knows the true mean, because
weekly counts of a slow mover swing by more than 25 % by chance (research notes §2.3). The tracking signal
Σ(forecast − actual) / MAD only grows when errors keep the same sign, i.e. when the forecast really drifts. Here the
MAD is taken around the mean error and the sum divided by √periods, so the signal is a t-like statistic with one
limit for any window: the textbook Σe/MAD > 4 grows like √periods on unbiased noise and fired on ~27 % of
product-weeks of the oracle over 8 weeks in bench/replenish.py.
"""

from __future__ import annotations

import numpy as np

TRACKING_LIMIT = 4.0  # unbiased normal errors give |signal| ≈ 1.25·|N(0, 1)|: a false alarm rate well below 1 %
TWO_WEEKS_TOLERANCE = 0.25
TRACKING, TWO_WEEKS = "tracking", "two_weeks"


def tracking_signal(forecast: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Σe / (√periods · mean|e − ē|) per row over the last axis (e = forecast − actual).

    ±inf when every error is the same non-zero number (pure bias), 0 when all errors are 0.
    """
    e = np.asarray(forecast, float) - np.asarray(actual, float)
    total = e.sum(axis=-1)
    mad = np.abs(e - e.mean(axis=-1, keepdims=True)).mean(axis=-1) * np.sqrt(e.shape[-1])
    biased = np.where(total > 0, np.inf, -np.inf)
    return np.divide(total, mad, out=np.where((mad == 0) & (np.abs(total) > 1e-9), biased, 0.0), where=mad > 0)


def flag_tracking(forecast: np.ndarray, actual: np.ndarray, limit: float = TRACKING_LIMIT) -> np.ndarray:
    """|tracking signal| > limit over the periods given (typically the last 8–13 weeks)."""
    return np.abs(tracking_signal(forecast, actual)) > limit


def flag_two_weeks(forecast: np.ndarray, actual: np.ndarray, tolerance: float = TWO_WEEKS_TOLERANCE) -> np.ndarray:
    """|forecast − actual| > tolerance·actual in each of the last two periods (a miss on a zero week counts)."""
    f = np.asarray(forecast, float)[..., -2:]
    a = np.asarray(actual, float)[..., -2:]
    return (np.abs(f - a) > tolerance * a).all(axis=-1)


def flag(forecast: np.ndarray, actual: np.ndarray, rule: str = TRACKING) -> np.ndarray:
    """Rows whose forecast needs a look, by `rule` ("tracking", the default, or "two_weeks")."""
    if rule == TRACKING:
        return flag_tracking(forecast, actual)
    if rule == TWO_WEEKS:
        return flag_two_weeks(forecast, actual)
    raise ValueError(f"unknown flag rule {rule!r}")
