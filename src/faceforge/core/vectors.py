"""Row normalisation with the checks every embedding consumer needs."""
from __future__ import annotations

import numpy as np

from faceforge.core.errors import FaceForgeError


def unit_rows(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """N×D float64 rows scaled to unit length; a zero or non-finite row is an error naming it."""
    e = np.asarray(x, dtype=np.float64)
    if e.ndim != 2:
        raise FaceForgeError(f"{what} must be an N×D array, got shape {e.shape}")
    norms = np.linalg.norm(e, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms < 1e-12))
    if len(bad):
        raise FaceForgeError(f"{what}: {len(bad)} rows are zero or not finite (first: row {bad[0]})")
    return e / norms[:, None]
