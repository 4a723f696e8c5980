"""Safety stock from demand and lead-time variability: SS = z·√((L+R)·σd² + d²·σL²), z from the service level."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def z_for(service_level: np.ndarray | float) -> np.ndarray:
    """Standard normal quantile of each cycle service level (0 < level < 1), e.g. 0.95 → 1.645."""
    levels = np.atleast_1d(np.asarray(service_level, dtype=float))
    if ((levels <= 0) | (levels >= 1)).any():
        raise ValueError("service level must be strictly between 0 and 1")
    uniq, inv = np.unique(levels, return_inverse=True)
    norm = NormalDist()
    return np.array([norm.inv_cdf(float(v)) for v in uniq])[inv].reshape(np.shape(service_level))


def safety_stock(
    z: np.ndarray | float, rate: np.ndarray | float, sigma_d: np.ndarray | float,
    lead_mean: np.ndarray | float, lead_std: np.ndarray | float, review: np.ndarray | float,
) -> np.ndarray:
    """z·√((L+R)·σd² + d²·σL²): demand variance over the protection interval plus lead-time variance."""
    cover = np.asarray(lead_mean, dtype=float) + np.asarray(review, dtype=float)
    var = cover * np.square(sigma_d) + np.square(rate) * np.square(lead_std)
    return np.asarray(z, dtype=float) * np.sqrt(var)
