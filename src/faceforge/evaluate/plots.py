"""Pictures people would rather look at than tables: ROC curves, score distributions,
error-versus-reject curves, similarity matrices, CMC and CED curves, retrieval sheets."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from faceforge.core.files import atomic_write  # noqa: E402
from faceforge.evaluate.verification import RocCurve  # noqa: E402


def _finish(fig, ax, path: str | Path, xlabel: str, ylabel: str, title: str, **legend) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(**legend)
    _save(fig, path)


def _save(fig, path: str | Path) -> None:
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_roc(curves: dict[str, RocCurve], path: str | Path, title: str = "ROC") -> None:
    """TPR against FPR on a log axis (the region verification systems operate in)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, c in curves.items():
        fpr, tpr = thin_roc(c)
        keep = fpr > 0
        ax.plot(fpr[keep], tpr[keep], label=name, lw=1.6)
    ax.set_xscale("log")
    legend = {"loc": "lower right"} if len(curves) <= 3 else \
        {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "fontsize": 8}  # beside the axes, off the curves
    _finish(fig, ax, path, "false positive rate", "true positive rate", title, **legend)


def thin_roc(c: RocCurve, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most ~2·points ROC vertices, log-spaced in FPR (a curve over tens of millions of
    pairs has millions of vertices; the picture needs a few thousand). The step shape is
    kept: for each grid FPR, the best TPR reached at or below it."""
    if len(c.fpr) <= 2 * points:
        return c.fpr, c.tpr
    pos = c.fpr[c.fpr > 0]
    grid = np.unique(np.r_[np.geomspace(pos.min(), 1.0, points), np.linspace(0, 1, points)])
    idx = np.searchsorted(c.fpr, grid, side="right") - 1
    return grid, np.maximum.accumulate(c.tpr)[idx]


def plot_score_distributions(hists: dict[str, dict], path: str | Path, title: str = "score distributions",
                             thresholds: dict[str, float] | None = None) -> None:
    """Genuine (solid) and impostor (dashed) score densities from score_histograms()."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, h) in enumerate(hists.items()):
        edges = np.asarray(h["edges"])
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        colour = f"C{i}"
        for key, ls in (("genuine", "-"), ("impostor", "--")):
            counts = np.asarray(h[key], dtype=float)
            ax.plot(centres, counts / max(counts.sum(), 1) / width, ls, color=colour,
                    label=f"{name} {key}" + (f" (d' {h['d_prime']:.2f})" if key == "genuine" else ""))
        if thresholds and name in thresholds:
            ax.axvline(thresholds[name], color=colour, alpha=0.5, lw=1)
    _finish(fig, ax, path, "cosine similarity", "density", title, fontsize=7)


def plot_error_vs_reject(curves: dict[str, dict], path: str | Path, title: str = "error versus reject") -> None:
    """FNMR against the fraction of lowest-quality pairs discarded; one line per quality
    measure (and FMR), from error_vs_reject()."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, res in curves.items():
        x = 100 * np.asarray(res["fractions"])
        for j, (fmr, c) in enumerate(res["curves"].items()):
            ax.plot(x, c["fnmr"], ["-", "--", ":"][j % 3], label=f"{name} @ FMR {fmr}")
    _finish(fig, ax, path, "lowest-quality pairs discarded (%)", "FNMR", title, fontsize=7)


def plot_cmc(curves: dict[str, np.ndarray], path: str | Path, title: str = "CMC") -> None:
    """Identification rate against rank (rank 1 first)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        ax.plot(np.arange(1, len(c) + 1), 100 * np.asarray(c), "o-", ms=3, label=name)
    _finish(fig, ax, path, "rank", "identification rate (%)", title, loc="lower right")


def plot_precision_recall(decisions: dict, path: str | Path, title: str = "top-K decisions") -> None:
    """Precision and recall as the acceptance threshold rises, one line pair per K
    (decisions: name → identification.TopKDecisions)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, d) in enumerate(decisions.items()):
        s = np.sort(d.score[np.isfinite(d.score)])
        if len(s) == 0:
            continue
        grid = np.unique(np.quantile(s, np.linspace(0, 1, 200)))
        pr = [d.at(t) for t in grid]
        ax.plot(grid, [100 * r["precision"] for r in pr], "-", color=f"C{i}", label=f"{name} precision")
        ax.plot(grid, [100 * r["recall"] for r in pr], "--", color=f"C{i}", label=f"{name} recall")
    _finish(fig, ax, path, "threshold", "%", title, fontsize=7)


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


def plot_bn_change(changes: dict[str, dict], path: str | Path, title: str = "BatchNorm statistics drift") -> None:
    """Per BatchNorm layer, ‖P1 − P0‖/‖P0‖ of running mean (top) and running var (bottom),
    one line per fine-tuned model (train.bn_finetune.bn_relative_change)."""
    fig, axes = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for name, c in changes.items():
        x = np.arange(1, len(c["mean"]) + 1)
        axes[0].plot(x, c["mean"], "o-", ms=2.5, label=name)
        axes[1].plot(x, c["var"], "o-", ms=2.5, label=name)
    axes[0].set_ylabel("relative change, mean")
    axes[1].set_ylabel("relative change, var")
    axes[1].set_xlabel("BatchNorm layer (forward order)")
    axes[0].set_title(title)
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    _save(fig, path)


def plot_bn_nll(reports: dict[str, dict], path: str | Path, title: str = "activation NLL under running statistics") -> None:
    """Per BatchNorm layer, the mean NLL of its inputs under N(running_mean, running_var):
    lower where the statistics describe the data (train.bn_finetune.bn_activation_report)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in reports.items():
        ax.plot(np.arange(1, len(r["nll"]) + 1), r["nll"], "o-", ms=2.5, label=name)
    _finish(fig, ax, path, "BatchNorm layer (forward order)", "mean NLL per element", title, fontsize=7)


def plot_bn_densities(reports: dict[str, dict], path: str | Path, title: str = "normalised BatchNorm inputs") -> None:
    """Densities of (x − μ)/σ for the first and last BatchNorm layer, against N(0, 1)."""
    first = next(iter(reports.values()))["layers"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    grid = np.linspace(-5, 5, 201)
    for ax, layer in zip(axes, (first[0], first[-1])):
        for name, r in reports.items():
            z = r["normalised"][layer]
            ax.hist(np.clip(z, -5, 5), bins=100, range=(-5, 5), density=True, histtype="step", label=name)
        ax.plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), "k--", lw=1, label="N(0, 1)")
        ax.set_title(f"{title}: {layer}")
        ax.set_xlabel("(x − running mean) / running std")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=7)
    _save(fig, path)


def plot_ced(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
             title: str = "cumulative error distribution",
             variants: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] | None = None) -> None:
    """Share of faces at or below each normalised mean error, one line per predictor;
    `variants` adds, per predictor, other versions of its curve (e.g. "offset-corrected")
    drawn dashed in the same colour. The legend sits beside the axes, off the curves."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = ("--", ":", "-.")
    for i, (name, (t, share)) in enumerate(curves.items()):
        colour = plt.get_cmap("tab10")(i % 10)
        ax.plot(t, share, label=name, lw=1.6, color=colour)
        for j, (kind, (tv, sv)) in enumerate((variants or {}).get(name, {}).items()):
            ax.plot(tv, sv, label=f"{name}, {kind}", lw=1.3, color=colour, ls=styles[j % len(styles)])
    ax.set_ylim(0, 1)
    _finish(fig, ax, path, "NME (inter-ocular)", "share of faces", title, loc="upper left",
            bbox_to_anchor=(1.02, 1.0), fontsize=8)


def plot_retrieval(rows: list[tuple[np.ndarray, list[tuple[np.ndarray, bool]]]], path: str | Path,
                   title: str = "queries and their top matches") -> None:
    """One row per query: the query image, then its ranked matches framed green (same
    person) or red (another person)."""
    cols = 1 + max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.0 * cols, 2.0 * len(rows)), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (query, matches) in enumerate(rows):
        axes[i, 0].imshow(query)
        axes[i, 0].set_title("query", fontsize=7)
        for j, (img, correct) in enumerate(matches, start=1):
            ax = axes[i, j]
            ax.imshow(img)
            ax.set_axis_on()
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_edgecolor("#1a9850" if correct else "#d73027")
                side.set_linewidth(3)
            ax.set_title(str(j), fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def plot_contact_sheet(groups: dict[str, list[np.ndarray]], path: str | Path, cols: int = 12,
                       title: str = "contact sheet", totals: dict[str, int] | None = None) -> None:
    """One block per group (e.g. a collected identity): its images in rows of `cols`;
    `totals`: how many images a group has where only some are shown ("24 of 56")."""
    rows = sum(max(1, -(-len(imgs) // cols)) for imgs in groups.values())
    height = 0.72 * rows + 0.22 * len(groups) + 0.4
    fig, axes = plt.subplots(rows, cols, figsize=(0.8 * cols, height), squeeze=False)
    fig.subplots_adjust(top=1 - 0.45 / height, bottom=0.1 / height, hspace=0.35)  # margins in inches, not shares
    for ax in axes.ravel():
        ax.set_axis_off()
    r = 0
    for name, imgs in groups.items():
        for k, img in enumerate(imgs):
            axes[r + k // cols, k % cols].imshow(img)
        total = (totals or {}).get(name, len(imgs))
        shown = f"{len(imgs)} of {total}" if total != len(imgs) else f"{total}"
        axes[r, 0].set_title(f"{name} ({shown})", fontsize=8, loc="left")
        r += max(1, -(-len(imgs) // cols))
    fig.suptitle(title, fontsize=9, y=1 - 0.12 / height)
    _save(fig, path)
