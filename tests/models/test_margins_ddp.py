"""AdaCos under a process group: every rank must end a step with the scale one process would
compute on the global batch, for both layouts (rows split under DDP, classes split by a
sharded PartialFC), including a rank that holds no target at all."""
import math

import numpy as np
import pytest
import torch

from faceforge.models.heads import AdaCos

from ..ddp import run_gloo


def expected_scale(cos: np.ndarray, labels: np.ndarray, s: float) -> float:
    """The AdaCos update written out: B_avg over all rows, lower median of the target angles."""
    n, c = cos.shape
    b_avg = sum(math.exp(s * cos[i, j]) for i in range(n) for j in range(c) if j != labels[i]) / n
    theta = sorted(math.acos(cos[i, labels[i]]) for i in range(n))
    theta_med = theta[(len(theta) - 1) // 2]  # torch.median: the lower middle for even counts
    return math.log(b_avg) / math.cos(min(math.pi / 4, theta_med))


def batch(n: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, c, generator=g, dtype=torch.float64) * 2 - 1, torch.randint(0, c, (n,), generator=g)


def _steps(margin: AdaCos, cos: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """s after each of two training steps on the same batch (the second uses the adapted s)."""
    margin.train()
    out = []
    for _ in range(2):
        margin(cos, labels)
        out.append(margin.s.item())
    return out


def _rows_split(rank: int, world: int, cos: torch.Tensor, labels: torch.Tensor, split: int) -> list[float]:
    part = slice(0, split) if rank == 0 else slice(split, None)
    return _steps(AdaCos(cos.shape[1]), cos[part], labels[part])


def _classes_split(rank: int, world: int, cos: torch.Tensor, labels: torch.Tensor, split: int) -> list[float]:
    margin = AdaCos(cos.shape[1])
    margin.rows_shared = True
    lo, hi = (0, split) if rank == 0 else (split, cos.shape[1])
    local = torch.where((labels >= lo) & (labels < hi), labels - lo, torch.full_like(labels, -1))
    return _steps(margin, cos[:, lo:hi], local)


def reference(cos: torch.Tensor, labels: torch.Tensor) -> list[float]:
    c, y = cos.numpy(), labels.numpy()
    s1 = expected_scale(c, y, math.sqrt(2) * math.log(c.shape[1] - 1))
    return [s1, expected_scale(c, y, s1)]


def test_adacos_rows_split_over_two_ranks_equals_one_process():
    cos, labels = batch(8, 5)
    out = run_gloo(_rows_split, cos, labels, 3)  # uneven, like an epoch's last batch
    assert out[0] == out[1]
    assert out[0] == pytest.approx(reference(cos, labels), rel=1e-6)  # s is a float32 buffer


def test_adacos_classes_split_over_two_ranks_equals_one_process():
    cos, labels = batch(6, 6)
    labels = labels % 3 + 3  # every target on rank 1: rank 0 has none and must not fail
    out = run_gloo(_classes_split, cos, labels, 3)
    assert out[0] == out[1]
    assert out[0] == pytest.approx(reference(cos, labels), rel=1e-6)  # s is a float32 buffer
