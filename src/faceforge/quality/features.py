"""Quality features from BatchNorm inputs, collected in the embedding's own
forward pass.

A forward hook on every 2-D BatchNorm sees the layer's input x (B×C×H×W). For each image,
v = per-channel spatial variance (unbiased) → C values; the layer contributes the variance
and the mean of v over channels (kind 'var'). The 'kl' variant instead compares each
channel's spatial N(mean, var) with the layer's running N(running_mean, running_var) by
symmetric KL and contributes the mean and variance of that over channels. Layers appear in
the order they run (R100: 153 layers → 306 features); 1-D BatchNorms are skipped. A 1×1
input has no spatial variance: it counts as 0.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError

KINDS = ("var", "kl")


def _spatial_var(flat: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over H·W; 0 for a 1×1 map (MobileFaceNet's last BatchNorm), where
    it is undefined. From the sums of d and d² with d = x − x₀, x₀ each map's first value
    (the shifted-data formula): on the CPU Tensor.var (Welford) costs about as much as the
    BatchNorm itself, a subtraction, square and sum a fraction. Without the shift, Σx² −
    n·mean² in float32 cancels to noise of order 1e-7·mean² when a channel's mean is large
    against its spread; shifted, the error scales with the spread instead."""
    n = flat.shape[2]
    if n < 2:
        return torch.zeros(flat.shape[:2], dtype=flat.dtype, device=flat.device)
    d = flat - flat[:, :, :1]
    mean = d.mean(dim=2)
    sq = d.square().sum(dim=2)
    return ((sq - n * mean * mean) / (n - 1)).clamp_min(0)


def _var_features(x: torch.Tensor) -> torch.Tensor:
    v = _spatial_var(x.flatten(2))                     # B×C
    return torch.stack([v.var(dim=1), v.mean(dim=1)], dim=1)


def _kl_features(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    flat = x.flatten(2)
    mp, vp = flat.mean(dim=2), _spatial_var(flat).clamp_min(bn.eps)  # per image, per channel
    mq, vq = bn.running_mean[None], bn.running_var[None].clamp_min(bn.eps)
    d2 = (mp - mq) ** 2
    # KL(p‖q) + KL(q‖p) for univariate normals: the log terms cancel.
    sym = (vp + d2) / (2 * vq) + (vq + d2) / (2 * vp) - 1.0
    return torch.stack([sym.mean(dim=1), sym.var(dim=1)], dim=1)


class BNInputFeatures:
    """Context manager: while active, every forward of `model` appends one B×2L block of
    features; `pop()` returns everything collected since the last pop as an N×2L array.

        with BNInputFeatures(backbone) as q:
            emb = backbone(batch)
        feats = q.pop()
    """

    def __init__(self, model: nn.Module, kind: str = "var") -> None:
        if kind not in KINDS:
            raise FaceForgeError(f"unknown quality feature kind {kind!r}; one of {', '.join(KINDS)}")
        if kind == "kl" and any(isinstance(m, nn.BatchNorm2d) and not m.track_running_stats
                                for m in model.modules()):
            raise FaceForgeError("the 'kl' features need BatchNorm running statistics")
        self.model, self.kind = model, kind
        self.bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.bns:
            raise FaceForgeError(f"{type(model).__name__} has no 2-D BatchNorm layer to take quality features from")
        self.layer_names: list[str] = []  # forward order, fixed by the first forward
        self._current: list[tuple[str, torch.Tensor]] = []
        self._blocks: list[torch.Tensor] = []
        self._handles: list = []

    @property
    def num_features(self) -> int:
        return 2 * len(self.layer_names)

    def _hook(self, name: str, bn: nn.BatchNorm2d):
        def fn(module, inputs):
            x = inputs[0].detach().float()
            self._current.append((name, _var_features(x) if self.kind == "var" else _kl_features(x, bn)))
        return fn

    def _finish(self, module, inputs, output) -> None:
        names = [n for n, _ in self._current]
        if not self.layer_names:
            self.layer_names = names
        elif names != self.layer_names:
            self._current.clear()
            raise FaceForgeError("BatchNorm layers ran in a different order than in the first forward "
                                 f"({len(names)} vs {len(self.layer_names)} layers)")
        self._blocks.append(torch.cat([f for _, f in self._current], dim=1).cpu())
        self._current.clear()

    def __enter__(self) -> "BNInputFeatures":
        self._handles = [bn.register_forward_pre_hook(self._hook(n, bn)) for n, bn in self.bns]
        self._handles.append(self.model.register_forward_hook(self._finish))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._current.clear()

    def pop(self) -> np.ndarray:
        if not self._blocks:
            return np.zeros((0, self.num_features), np.float32)
        out = torch.cat(self._blocks).numpy().astype(np.float32)
        self._blocks = []
        return out
