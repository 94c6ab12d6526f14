"""Row normalisation with the checks every embedding consumer needs."""
from __future__ import annotations

import numpy as np

from faceforge.core.errors import FaceForgeError


def unit_rows(x: np.ndarray, what: str = "embeddings", dtype: type = np.float64) -> np.ndarray:
    """N×D rows scaled to unit length (a new array); a zero or non-finite row is an error naming
    it. float32 halves the memory of float64 where a million rows are searched, not summed."""
    e = np.asarray(x, dtype=dtype)
    if e.ndim != 2:
        raise FaceForgeError(f"{what} must be an N×D array, got shape {e.shape}")
    norms = np.linalg.norm(e, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms < 1e-12))
    if len(bad):
        raise FaceForgeError(f"{what}: {len(bad)} rows are zero or not finite (first: row {bad[0]})")
    return e / norms[:, None]
