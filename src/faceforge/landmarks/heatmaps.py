"""Heatmap targets and their decoding.

A point (x, y) in output pixels (pixel centres at integer coordinates) becomes the
unnormalised Gaussian exp(−d²/2σ²) over the grid. Decoding takes each map's argmax and
refines it to sub-pixel precision by fitting a parabola through the log of the peak and its
two neighbours along each axis: the log of a sampled Gaussian is exactly a parabola, so a
clean target decodes back to its point, not to the nearest pixel.
"""
from __future__ import annotations

import torch

EPS = 1e-6


def gaussian_heatmaps(points: torch.Tensor, size: int | tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """points: (..., K, 2) x, y in output pixels → (..., K, H, W) Gaussians with peak 1
    (a point outside the grid gives a map with its tail, or zeros)."""
    h, w = (size, size) if isinstance(size, int) else size
    ys = torch.arange(h, dtype=torch.float32, device=points.device)
    xs = torch.arange(w, dtype=torch.float32, device=points.device)
    px, py = points[..., 0, None, None].float(), points[..., 1, None, None].float()
    d2 = (xs - px) ** 2 + (ys[:, None] - py) ** 2
    return torch.exp(-d2 / (2.0 * sigma ** 2))


def _vertex(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    curv = left - 2.0 * centre + right
    off = 0.5 * (left - right) / torch.where(curv < -EPS, curv, torch.full_like(curv, -1.0))
    return torch.where(curv < -EPS, off, torch.zeros_like(off)).clamp(-0.5, 0.5)


def _offset(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Vertex of the parabola through (−1, l), (0, c), (1, r), within ±0.5: on log values
    where all three are positive (exact for a Gaussian), on the values themselves where a
    network's map dips to zero or below next to its peak (a log there would be meaningless)."""
    positive = (left > EPS) & (centre > EPS) & (right > EPS)
    logs = _vertex(*(torch.log(v.clamp_min(EPS)) for v in (left, centre, right)))
    return torch.where(positive, logs, _vertex(left, centre, right))


def decode_heatmaps(heatmaps: torch.Tensor, refine: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, H, W) → points (N, K, 2) in output pixels and confidences (N, K): the peak
    value, which is 1 for a clean target and falls when the network is unsure."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    conf, idx = flat.max(dim=-1)
    y, x = (idx // w), (idx % w)
    pts = torch.stack([x, y], dim=-1).float()
    if refine:
        hm = heatmaps.reshape(n * k, h, w)
        i = torch.arange(n * k, device=heatmaps.device)
        xf, yf = x.reshape(-1), y.reshape(-1)
        xl, xr = (xf - 1).clamp(0, w - 1), (xf + 1).clamp(0, w - 1)
        yu, yd = (yf - 1).clamp(0, h - 1), (yf + 1).clamp(0, h - 1)
        c = hm[i, yf, xf]
        inner_x = (xf > 0) & (xf < w - 1)
        inner_y = (yf > 0) & (yf < h - 1)
        dx = torch.where(inner_x, _offset(hm[i, yf, xl], c, hm[i, yf, xr]), torch.zeros_like(c))
        dy = torch.where(inner_y, _offset(hm[i, yu, xf], c, hm[i, yd, xf]), torch.zeros_like(c))
        pts = pts + torch.stack([dx, dy], dim=-1).reshape(n, k, 2)
    return pts, conf.clamp(0.0, 1.0)
