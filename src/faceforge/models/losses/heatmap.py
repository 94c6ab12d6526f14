"""The landmark network's loss: every supervised head's heatmaps against Gaussian targets
drawn at the labelled points, summed over the heads.

Per face the loss is the MSE over its points' maps (summed over heads). A few labels in
real sets are simply wrong (a point on the cheek instead of the eye); with `trim` the
largest per-face losses of each batch (⌊trim·N⌋ faces) are left out, so a wrong label
cannot pull the network towards it, while every face still counts once the network agrees
with it. trim = 0 is the plain MSE of the reference recipe.
"""
from __future__ import annotations

import torch
from torch import nn

from faceforge.landmarks.heatmaps import gaussian_heatmaps


class HeatmapLoss(nn.Module):
    def __init__(self, sigma: float = 2.0, trim: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= trim < 1.0:
            raise ValueError(f"trim is a fraction of the batch in [0, 1), not {trim}")
        self.sigma, self.trim = float(sigma), float(trim)

    def per_face(self, heatmaps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """heatmaps: (N, heads, K, H, W); points: (N, K, 2) in heatmap pixels → (N,)."""
        target = gaussian_heatmaps(points, heatmaps.shape[-2:], self.sigma).to(heatmaps.dtype)
        return (heatmaps - target[:, None]).square().mean(dim=(2, 3, 4)).sum(dim=1)

    def forward(self, heatmaps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        loss = self.per_face(heatmaps, points)
        drop = int(self.trim * loss.shape[0])
        if drop:
            loss = torch.topk(loss, loss.shape[0] - drop, largest=False).values
        return loss.mean()
