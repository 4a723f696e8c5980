"""Manual forecast anchors: final = stat + w·(manual − stat) with a capped weight, a reason, a log and FVA."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WEIGHT_CAP = 0.5  # a planner's number never moves the forecast more than half-way
MIN_CHANGE = 0.10  # overrides within ±10 % of the statistical forecast are logged but not applied
UPWARD_DAMP = 0.75  # upward overrides are right less often (optimism bias): their weight × 0.75


@dataclass(frozen=True)
class Override:
    """One logged override: what was asked, what was applied and why."""

    index: int  # product row
    stat: float
    manual: float
    weight_asked: float
    weight_used: float
    blended: float
    reason: str


def blend(stat: np.ndarray, manual: np.ndarray, weight: np.ndarray | float, cap: float = WEIGHT_CAP,
          min_change: float = MIN_CHANGE, upward_damp: float = UPWARD_DAMP) -> tuple[np.ndarray, np.ndarray]:
    """(blended, weight used): w = min(weight, cap), × upward_damp if manual > stat, 0 if |manual − stat| is small.

    A NaN manual value means no anchor (weight 0). A small change is |manual − stat| < min_change·stat (any change
    counts when stat is 0).
    """
    stat = np.asarray(stat, float)
    manual = np.asarray(manual, float)
    has = ~np.isnan(manual)
    m = np.where(has, manual, stat)
    w = np.clip(np.broadcast_to(np.asarray(weight, float), stat.shape), 0.0, cap)
    w = np.where(m > stat, w * upward_damp, w)
    w = np.where(has & (np.abs(m - stat) >= min_change * stat) & (m != stat), w, 0.0)
    return stat + w * (m - stat), w


def apply_anchors(
    stat: np.ndarray, manual: np.ndarray, weight: np.ndarray | float, reasons: Sequence[str | None],
    cap: float = WEIGHT_CAP,
) -> tuple[np.ndarray, np.ndarray, list[Override]]:
    """Blend every anchored row (non-NaN manual) and log it; ValueError if an anchored row has no reason."""
    stat = np.asarray(stat, float)
    manual = np.asarray(manual, float)
    asked = np.broadcast_to(np.asarray(weight, float), stat.shape)
    rows = np.flatnonzero(~np.isnan(manual))
    missing = [int(i) for i in rows if i >= len(reasons) or not (reasons[i] or "").strip()]
    if missing:
        raise ValueError(f"a manual anchor needs a reason (rows {missing[:10]})")
    blended, used = blend(stat, manual, asked, cap)
    log = [Override(int(i), float(stat[i]), float(manual[i]), float(asked[i]), float(used[i]), float(blended[i]),
                    str(reasons[i]).strip()) for i in rows]
    return blended, used, log


def fva(actual: np.ndarray, stat: np.ndarray, final: np.ndarray) -> float:
    """Forecast value added of the overrides: (Σ|stat − actual| − Σ|final − actual|) / Σ actual (> 0 = helped)."""
    actual = np.asarray(actual, float)
    total = actual.sum()
    if total <= 0:
        return 0.0
    return float((np.abs(np.asarray(stat, float) - actual).sum() - np.abs(np.asarray(final, float) - actual).sum())
                 / total)
