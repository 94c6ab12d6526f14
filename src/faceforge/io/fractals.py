"""Procedural out-of-domain images: FractalDB-style iterated function systems (Kataoka et
al., 2020), so BatchNorm fine-tuning has face-free data without downloading any.

Image i of seed s is a pure function of (s, i): 2–4 random contractive affine maps, picked
with probability ∝ |det|, iterated by the chaos game on many chains in parallel; the point
density is drawn log-scaled in two random colours on a random dark background. Systems
whose attractor fills too little of the frame are redrawn (FractalDB's filling-rate check).
"""
from __future__ import annotations

import numpy as np

from faceforge.core.errors import FaceForgeError

MIN_FILL = 0.08


def _system(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(rng.integers(2, 5))
    a = rng.uniform(-1, 1, (n, 2, 2))
    norms = np.linalg.norm(a, ord=2, axis=(1, 2))
    a *= (rng.uniform(0.45, 0.9, n) / norms)[:, None, None]  # contractive: the game converges
    b = rng.uniform(-1, 1, (n, 2))
    p = np.abs(np.linalg.det(a)) + 1e-3
    return a, b, p / p.sum()


def _points(a, b, p, rng, chains: int = 1024, steps: int = 96, burn: int = 16) -> np.ndarray:
    x = rng.uniform(-1, 1, (chains, 2))
    out = []
    for t in range(steps):
        k = rng.choice(len(p), size=chains, p=p)
        x = np.einsum("nij,nj->ni", a[k], x) + b[k]
        if t >= burn:
            out.append(x)
    return np.concatenate(out)


def fractal_image(index: int, size: int = 112, seed: int = 0) -> np.ndarray:
    """size×size×3 uint8 RGB."""
    if size < 8:
        raise FaceForgeError(f"fractal images need a size of at least 8 pixels, got {size}")
    rng = np.random.default_rng([seed, index])
    for _ in range(50):
        a, b, p = _system(rng)
        pts = _points(a, b, p, rng)
        lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
        span = np.maximum(hi - lo, 1e-9)
        margin = size * rng.uniform(0.02, 0.12)
        xy = (pts - lo) / span.max() * (size - 2 * margin) + margin
        ij = np.clip(xy.astype(int), 0, size - 1)
        density = np.zeros((size, size))
        np.add.at(density, (ij[:, 1], ij[:, 0]), 1.0)
        if (density > 0).mean() >= MIN_FILL:
            break
    d = np.log1p(density)
    d /= max(d.max(), 1e-9)
    c1, c2 = rng.uniform(0.3, 1.0, 3), rng.uniform(0.0, 1.0, 3)
    background = rng.uniform(0.0, 0.25, 3)
    rgb = background + d[..., None] * (c1 * d[..., None] + c2 * (1 - d[..., None]) - background)
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


class FractalImages:
    """`count` images, `images[i]` = fractal_image(i, size, seed), rendered on demand."""

    def __init__(self, size: int = 112, seed: int = 0, count: int = 10000) -> None:
        self.size, self.seed, self.count = int(size), int(seed), int(count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= int(i) < self.count:
            raise IndexError(i)
        return fractal_image(int(i), self.size, self.seed)
