"""Which samples a step sees. Every order is a pure function of (seed, epoch), so a resumed
run continues with exactly the batches it would have had, and DDP ranks take disjoint
slices of the same order."""
from __future__ import annotations

from collections import deque

import numpy as np
from torch.utils.data import Dataset

from faceforge.core.errors import FaceForgeError


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def _by_identity(targets: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(targets, kind="stable")
    classes, starts = np.unique(targets[order], return_index=True)
    return {int(c): idx for c, idx in zip(classes, np.split(order, starts[1:]))}


def pk_batch_count(targets: np.ndarray, p: int, k: int) -> int:
    """Batches per epoch of `pk_batches`: every identity's images cut into chunks of K
    (the last one filled up), P chunks per batch."""
    counts = np.unique(np.asarray(targets), return_counts=True)[1]
    return int(np.sum(-(-counts // k))) // p


def pk_batches(targets: np.ndarray, p: int, k: int, seed: int, epoch: int) -> list[np.ndarray]:
    """P identities × K images per batch (for losses that need positives in the batch, such
    as batch-hard triplet), covering the epoch's images about once: each identity's images
    are shuffled and cut into chunks of K (a short last chunk is filled from the same
    identity), the chunks are shuffled, and a batch takes the next P chunks of distinct
    identities (a chunk whose identity is already in the batch waits for the next one).
    The count is fixed (`pk_batch_count`); if distinct identities run out at the end of the
    epoch, a batch is completed with K random images of identities not yet in it."""
    targets = np.asarray(targets)
    rng = np.random.default_rng([seed, epoch, 1])
    by_id = _by_identity(targets)
    if len(by_id) < p:
        raise FaceForgeError(f"P×K sampling needs at least P={p} identities, the data has {len(by_id)}")
    chunks: list[tuple[int, np.ndarray]] = []
    for c, idx in by_id.items():
        idx = rng.permutation(idx)
        short = -len(idx) % k
        if short:
            idx = np.concatenate([idx, rng.choice(idx, short, replace=len(idx) < short)])
        chunks += [(c, idx[i:i + k]) for i in range(0, len(idx), k)]
    pending = deque(chunks[i] for i in rng.permutation(len(chunks)))
    ids = np.array(sorted(by_id))
    batches = []
    for _ in range(pk_batch_count(targets, p, k)):
        batch, used, waiting = [], set(), []
        while len(batch) < p and pending:
            c, idx = pending.popleft()
            if c in used:
                waiting.append((c, idx))
                continue
            used.add(c)
            batch.append(idx)
        pending.extendleft(reversed(waiting))
        if len(batch) < p:
            for c in rng.choice(ids[~np.isin(ids, list(used))], p - len(batch), replace=False):
                idx = by_id[int(c)]
                batch.append(rng.choice(idx, k, replace=len(idx) < k))
        batches.append(np.concatenate(batch))
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
