"""Shared by the benchmarks: timing with peak memory, the sklearn baseline for TPR@FPR,
row normalisation, the machine record."""
from __future__ import annotations

import time
import tracemalloc

import numpy as np
from sklearn.metrics import roc_curve

from faceforge.evaluate.verification import DEFAULT_FPRS


def measured(fn, *args):
    """(result, seconds, peak bytes allocated while it ran)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak


def sklearn_tpr(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The usual way: sklearn's full ROC, then linear interpolation at each target FPR."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return {f"{f:g}": float(np.interp(f, fpr, tpr)) for f in DEFAULT_FPRS}


def l2n(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def machine() -> dict:
    """What the numbers were measured on."""
    import os
    import platform
    return {"cpus": os.cpu_count(), "platform": platform.platform()}
