"""Which samples a step sees. Every order is a pure function of (seed, epoch), so a resumed
run continues with exactly the batches it would have had, and DDP ranks take disjoint
slices of the same order."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from faceforge.core.errors import FaceForgeError


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def pk_batches(targets: np.ndarray, p: int, k: int, seed: int, epoch: int) -> list[np.ndarray]:
    """P identities × K images per batch (for batch-hard triplet). Identities with fewer
    than K images are sampled with replacement; identities are visited in a shuffled order."""
    targets = np.asarray(targets)
    rng = np.random.default_rng([seed, epoch, 1])
    by_id = {c: np.flatnonzero(targets == c) for c in np.unique(targets)}
    if len(by_id) < p:
        raise FaceForgeError(f"P×K sampling needs at least P={p} identities, the data has {len(by_id)}")
    ids = rng.permutation(list(by_id))
    batches = []
    for i in range(0, len(ids) - p + 1, p):
        idx = [rng.choice(by_id[c], size=k, replace=len(by_id[c]) < k) for c in ids[i:i + p]]
        batches.append(np.concatenate(idx))
    return batches


def balanced_indices(targets: np.ndarray, per_class: int, quantile: float = 0.25,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class balancing of the person re-id reference: identities smaller than the
    `quantile` of the counts among identities with fewer than `per_class` images are
    dropped; the rest are upsampled (repeats to be augmented) or randomly downsampled to
    exactly `per_class`. Returns (indices, is_repeat, dropped class ids)."""
    targets = np.asarray(targets)
    classes, counts = np.unique(targets, return_counts=True)
    small = counts[counts < per_class]
    cut = np.quantile(small, quantile) if len(small) else 0
    rng = np.random.default_rng(seed)
    out, repeat, dropped = [], [], []
    for c, n in zip(classes, counts):
        idx = np.flatnonzero(targets == c)
        if n < cut:
            dropped.append(c)
            continue
        if n >= per_class:
            pick = rng.choice(idx, per_class, replace=False)
            out.append(np.sort(pick))
            repeat.append(np.zeros(per_class, bool))
        else:
            extra = rng.choice(idx, per_class - n, replace=True)
            out.append(np.concatenate([idx, extra]))
            repeat.append(np.r_[np.zeros(n, bool), np.ones(per_class - n, bool)])
    if not out:
        raise FaceForgeError("class balancing dropped every identity")
    return np.concatenate(out), np.concatenate(repeat), np.asarray(dropped)


class BalancedDataset(Dataset):
    """A dataset resampled by `balanced_indices`; upsampled copies are augmented (seeded by
    position) so they are not exact duplicates. Class ids are renumbered densely when
    identities are dropped."""

    def __init__(self, base: Dataset, targets: np.ndarray, per_class: int, augment, quantile: float = 0.25,
                 seed: int = 0) -> None:
        self.base, self.augment, self.seed = base, augment, seed
        self.indices, self.repeat, self.dropped = balanced_indices(targets, per_class, quantile, seed)
        kept = np.unique(np.asarray(targets)[self.indices])
        self.remap = {int(c): i for i, c in enumerate(kept)}
        self.num_classes = len(kept)
        self.targets = np.array([self.remap[int(c)] for c in np.asarray(targets)[self.indices]])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, pos: int):
        img, label = self.base[int(self.indices[pos])]
        if self.repeat[pos]:
            img = self.augment(img, np.random.default_rng([self.seed, pos]))
        return img, self.remap[int(label)]
