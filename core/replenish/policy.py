"""Order-up-to (R,S) suggestion on the projected quantity, reservations as allocation, MOQ/pack rounding."""

from __future__ import annotations

import numpy as np

DYNAMIC, STATIC, FIXED = 0, 1, 2
STRATEGY_NAMES = ("dynamic", "static", "fixed")
STATIC_DAYS = 28  # the old formula's averaging window


def strategy_codes(strategy: object, n: int) -> np.ndarray:
    """int8[n] codes from None (all dynamic), one name/code, or a per-product sequence of names or codes."""
    if strategy is None:
        return np.zeros(n, dtype=np.int8)
    arr = np.asarray(strategy)
    if arr.dtype.kind in "UO":
        lookup = {name: code for code, name in enumerate(STRATEGY_NAMES)}
        try:
            codes = np.vectorize(lambda s: lookup[str(s)], otypes=[np.int8])(arr)
        except KeyError as exc:
            raise ValueError(f"unknown strategy {exc.args[0]!r}; expected one of {STRATEGY_NAMES}") from None
    else:
        codes = arr.astype(np.int8)
        if ((codes < 0) | (codes > FIXED)).any():
            raise ValueError("strategy codes are 0 (dynamic), 1 (static) or 2 (fixed)")
    return np.broadcast_to(codes, (n,)).copy()


def projected(on_hand: np.ndarray, on_order: np.ndarray, requested: np.ndarray, reserved: np.ndarray) -> np.ndarray:
    """Projected quantity = on hand + on order + requested − reserved (a reservation is stock already allocated)."""
    return np.asarray(on_hand, float) + np.asarray(on_order, float) + np.asarray(requested, float) - np.asarray(
        reserved, float)


def cover_days(lead_mean: np.ndarray | float, review: np.ndarray | float) -> np.ndarray:
    """Whole days the order must cover: L + R rounded half up, at least 1."""
    return np.maximum(1, np.floor(np.asarray(lead_mean, float) + np.asarray(review, float) + 0.5)).astype(np.int64)


def cover_demand(daily: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Σ daily[i, :days[i]] (days ≤ horizon)."""
    if (np.asarray(days) > daily.shape[1]).any():
        raise ValueError("forecast horizon shorter than the cover days")
    csum = np.concatenate([np.zeros((daily.shape[0], 1)), np.cumsum(daily, axis=1)], axis=1)
    return np.take_along_axis(csum, np.asarray(days)[:, None], axis=1)[:, 0]


def round_to_pack(need: np.ndarray, moq: np.ndarray | float, pack: np.ndarray | float) -> np.ndarray:
    """0 if need ≤ 0, else max(MOQ, pack·⌈need/pack⌉), with the MOQ itself rounded up to whole packs."""
    need = np.asarray(need, float)
    pack = np.broadcast_to(np.asarray(pack, float), need.shape)
    if (pack <= 0).any():
        raise ValueError("pack size must be positive")
    packs = np.ceil(need / pack - 1e-9)  # tolerance: 24.000000001 units of pack 1 stay 24
    min_packs = np.ceil(np.asarray(moq, float) / pack - 1e-9)
    return np.where(need > 0, np.maximum(packs, min_packs) * pack, 0.0)


def suggest(order_up_to: np.ndarray, position: np.ndarray, moq: np.ndarray | float,
            pack: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(need = max(0, S − projected), suggested = need rounded to MOQ/pack)."""
    need = np.maximum(np.asarray(order_up_to, float) - np.asarray(position, float), 0.0)
    return need, round_to_pack(need, moq, pack)


def static_rate(demand: np.ndarray, days: int = STATIC_DAYS) -> np.ndarray:
    """The old formula's rate: plain average of the last `days` days of sales."""
    y = np.asarray(demand, float)
    span = min(days, y.shape[1])
    return y[:, y.shape[1] - span:].mean(axis=1) if span else np.zeros(y.shape[0])
