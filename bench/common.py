"""Shared by the benchmarks: timing with peak memory, the sklearn baseline for TPR@FPR,
row normalisation, the machine record, running the faceforge CLI as a user does."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

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


REPO = Path(__file__).resolve().parent.parent
FACEFORGE = [sys.executable, "-m", "faceforge.cli.main"]


def run_cli(*args: str) -> dict:
    """`faceforge ARGS --json` from the repository root, its JSON; exit with its output on failure."""
    res = subprocess.run([*FACEFORGE, *args, "--json"], cwd=REPO, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"faceforge {' '.join(args)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return json.loads(res.stdout)


def train_output(cfg: str) -> Path:
    """The run folder a training config writes to."""
    from faceforge.train.config import load_yaml
    return REPO / load_yaml(REPO / cfg)["train"]["output"]
