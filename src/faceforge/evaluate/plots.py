"""Pictures people would rather look at than tables: ROC curves, similarity matrices."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from faceforge.core.files import atomic_write  # noqa: E402
from faceforge.evaluate.verification import RocCurve  # noqa: E402


def _save(fig, path: str | Path) -> None:
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_roc(curves: dict[str, RocCurve], path: str | Path, title: str = "ROC") -> None:
    """TPR against FPR on a log axis (the region verification systems operate in)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, c in curves.items():
        keep = c.fpr > 0
        ax.plot(c.fpr[keep], c.tpr[keep], label=name, lw=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_similarity(matrix: np.ndarray, labels: list[str], path: str | Path,
                    title: str = "cosine similarity") -> None:
    n = len(labels)
    size = min(4 + 0.35 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(matrix, vmin=-1 if matrix.min() < 0 else 0, vmax=1, cmap="viridis")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if matrix[i, j] < 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    _save(fig, path)


def plot_training_history(history: list[dict], path: str | Path, title: str = "training",
                          baseline: float | None = None, metric: str = "val_acc") -> None:
    """Loss and validation accuracy per epoch (with the untrained/pretrained level dashed)."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="tab:red", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:red")
    if any(metric in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(epochs, [100 * h[metric] for h in history], "s-", color="tab:blue", label=metric)
        if baseline is not None:
            ax2.axhline(100 * baseline, ls="--", color="tab:blue", alpha=0.6, label="before training")
        ax2.set_ylabel(f"{metric} (%)", color="tab:blue")
        ax2.legend(loc="center right")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _save(fig, path)
