"""Syntetos–Boylan demand classes (smooth, erratic, intermittent, lumpy) from ADI and CV²."""

from __future__ import annotations

import numpy as np

SMOOTH, ERRATIC, INTERMITTENT, LUMPY = 0, 1, 2, 3
CLASS_NAMES = ("smooth", "erratic", "intermittent", "lumpy")
ADI_CUT = 1.32
CV2_CUT = 0.49


def adi_cv2(demand: np.ndarray, ok: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ADI (learned days ÷ days with demand; inf when none) and CV² of the non-zero sizes (0 when < 2)."""
    y = np.asarray(demand, dtype=float)
    ok = np.ones(y.shape, dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
    nz = (y > 0) & ok
    n_ok = ok.sum(axis=1)
    n_nz = nz.sum(axis=1)
    adi = np.full(y.shape[0], np.inf)
    np.divide(n_ok, n_nz, out=adi, where=n_nz > 0)
    size = np.where(nz, y, 0.0)
    s1 = size.sum(axis=1)
    s2 = (size * size).sum(axis=1)
    cv2 = np.zeros(y.shape[0])
    many = n_nz >= 2
    mean = s1[many] / n_nz[many]
    var = (s2[many] - n_nz[many] * mean * mean) / (n_nz[many] - 1)
    cv2[many] = np.maximum(var, 0.0) / (mean * mean)
    return adi, cv2


def classify(demand: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """int8 class per row: SMOOTH, ERRATIC, INTERMITTENT or LUMPY (cut-offs ADI 1.32, CV² 0.49)."""
    adi, cv2 = adi_cv2(demand, ok)
    return ((adi >= ADI_CUT).astype(np.int8) * 2 + (cv2 >= CV2_CUT).astype(np.int8)).astype(np.int8)
