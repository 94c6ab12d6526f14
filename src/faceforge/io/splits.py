"""Identity-disjoint splits and verification pair lists, deterministic by seed."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write_text
from faceforge.io.images import IMAGE_EXTENSIONS


def identity_split(root: str | Path, fractions: dict[str, float], seed: int = 0,
                   min_images: int = 1) -> dict[str, list[str]]:
    """Assign whole identities (sub-folders) to splits; returns relative image paths per split.
    The last split takes what remains (fractions of identities, not images)."""
    root = Path(root)
    ids = {d.name: sorted(f"{d.name}/{f.name}" for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
           for d in sorted(root.iterdir()) if d.is_dir()} if root.is_dir() else {}
    ids = {k: v for k, v in ids.items() if len(v) >= min_images}
    if not ids:
        raise FaceForgeError(f"no identity folders with at least {min_images} images", root)
    names = np.random.default_rng(seed).permutation(sorted(ids)).tolist()
    out, start = {}, 0
    keys = list(fractions)
    for i, k in enumerate(keys):
        n = len(names) - start if i == len(keys) - 1 else int(round(fractions[k] * len(names)))
        out[k] = [img for name in sorted(names[start:start + n]) for img in ids[name]]
        start += n
    return out


def images_outside(root: str | Path, used: list[str]) -> list[str]:
    """Every image (relative path, sorted) of the identities that `used` never mentions:
    the identity-disjoint complement of the given splits."""
    root = Path(root)
    if not root.is_dir():
        raise FaceForgeError("not a folder of identity sub-folders", root)
    taken = {p.split("/")[0] for p in used}
    return [f"{d.name}/{f.name}" for d in sorted(root.iterdir()) if d.is_dir() and d.name not in taken
            for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS]


def verification_pairs(images: list[str], seed: int = 0, max_same_per_identity: int | None = None
                       ) -> list[tuple[str, str, bool]]:
    """Every same-identity pair (optionally capped per identity) and as many
    different-identity pairs, drawn at random without repeats."""
    by_id: dict[str, list[str]] = {}
    for p in images:
        by_id.setdefault(p.split("/")[0], []).append(p)
    rng = np.random.default_rng(seed)
    same = []
    for name in sorted(by_id):
        pairs = list(combinations(sorted(by_id[name]), 2))
        if max_same_per_identity and len(pairs) > max_same_per_identity:
            pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_same_per_identity, replace=False))]
        same += pairs
    if len(by_id) < 2:
        raise FaceForgeError("different-identity pairs need at least two identities")
    seen, diff = set(), []
    flat = sorted(images)
    while len(diff) < len(same):
        a, b = rng.choice(len(flat), 2, replace=False)
        pa, pb = flat[a], flat[b]
        if pa.split("/")[0] == pb.split("/")[0] or (pa, pb) in seen or (pb, pa) in seen:
            continue
        seen.add((pa, pb))
        diff.append((pa, pb))
    pairs = [(a, b, True) for a, b in same] + [(a, b, False) for a, b in diff]
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]


def write_list(path: str | Path, items: list[str]) -> None:
    atomic_write_text(path, "".join(f"{i}\n" for i in items))


def write_pairs(path: str | Path, pairs: list[tuple[str, str, bool]]) -> None:
    atomic_write_text(path, "".join(f"{a} {b} {int(s)}\n" for a, b, s in pairs))


def write_split(root: str | Path, output: str | Path, val: float = 0.1, test: float = 0.1, seed: int = 0,
                min_images: int = 1, max_same: int | None = None) -> dict:
    """Identity-disjoint OUTPUT/{val,test,train}.txt (fractions of identities; train takes
    the rest) and, for val and test when they hold two identities or more,
    OUTPUT/<split>_pairs.txt verification pairs. Returns the counts per split."""
    output = Path(output)
    parts = identity_split(root, {"val": val, "test": test, "train": 1.0}, seed, min_images)
    res = {}
    for name, items in parts.items():
        write_list(output / f"{name}.txt", items)
        res[name] = {"images": len(items), "identities": len({i.split('/')[0] for i in items})}
        if name != "train" and res[name]["identities"] >= 2:
            pairs = verification_pairs(items, seed, max_same)
            write_pairs(output / f"{name}_pairs.txt", pairs)
            res[name]["pairs"] = len(pairs)
    return res
