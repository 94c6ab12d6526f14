"""The person re-id task of the Trainer (`task: reid`): whole-body crops from person
folders, no face detection or alignment, letterboxed to the network's input.

    task: reid
    model: {backbone: osnet, num_features: 512, bnneck: false}      # or timm:efficientnet_b1 ...
    head:  {type: adacos, triplet_weight: 0.0}                      # any head type; triplet → P×K
    data:  {root: reid_cuhk03/train, camera: cuhk03, input: [128, 64], val_people: 0.1,
            augment: {pad: 6, erase: 0.5, colour: 0.5}, balance: null}
    train: {...}                                                    # any TrainConfig field

A share of the training people (`val_people`) is held out, never trained on, and scored
each epoch by the cross-camera ranking (rank-1, mAP): that is what `best_metric` picks the
checkpoint by, so the test people are looked at only once. `balance` resamples the
remaining people as the re-id reference does (train.samplers.balanced_indices).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from faceforge.core.errors import FaceForgeError
from faceforge.io.bodies import BodyFolder, scan_body_folder
from faceforge.io.images import load_image
from faceforge.models.cards import InputSpec
from faceforge.train.augment import Compose, reid_train_augment
from faceforge.vision.body import letterbox

REID_INPUT = (128, 64)  # CUHK03 crops are 128 px high: 256 × 128 would only interpolate
# The backbones of the re-id reference and the strong baselines, with what each needs beyond
# its name (Swin's attention windows are laid out for one input size, given as img_size).
REID_BACKBONES: dict[str, dict] = {
    "osnet": {}, **{f"timm:efficientnet_b{i}": {} for i in range(5)}, "timm:resnet50": {},
    "timm:swin_tiny_patch4_window7_224": {"img_size": list(REID_INPUT)},
}


class BodyDataset(Dataset):
    """Some images of a BodyFolder as (letterboxed RGB uint8, class), classes numbered over
    the people kept; `cameras` and `people` are per item."""

    def __init__(self, folder: BodyFolder, height: int, width: int, indices: np.ndarray | None = None) -> None:
        self.folder, self.height, self.width = folder, int(height), int(width)
        self.indices = np.arange(len(folder.files)) if indices is None else np.asarray(indices)
        self.people = [folder.people[i] for i in self.indices]
        self.classes = sorted(set(self.people))
        index = {c: k for k, c in enumerate(self.classes)}
        self.targets = np.array([index[p] for p in self.people])
        self.cameras = folder.cameras[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def path(self, i: int) -> Path:
        return self.folder.files[int(self.indices[i])]

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return letterbox(load_image(self.path(i)), self.height, self.width), int(self.targets[i])

    def images(self) -> np.ndarray:
        return np.stack([self[i][0] for i in range(len(self))])


def split_people(folder: BodyFolder, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices): a seeded `fraction` of the people, all their images."""
    people = sorted(set(folder.people))
    if not 0.0 <= fraction < 1.0:
        raise FaceForgeError(f"data.val_people must be in [0, 1), got {fraction}")
    n_val = int(round(fraction * len(people)))
    held = set(np.random.default_rng(seed).choice(people, n_val, replace=False).tolist()) if n_val else set()
    is_val = np.array([p in held for p in folder.people])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _input(d: dict) -> tuple[int, int]:
    size = d.get("input", list(REID_INPUT))
    if isinstance(size, int):
        size = [size, size]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise FaceForgeError(f"data.input must be [height, width] in pixels, got {size!r}")
    return int(size[0]), int(size[1])


def build_reid_data(d: dict, seed: int) -> tuple[BodyDataset, Compose | None, InputSpec, BodyDataset | None]:
    """The `data:` section of a re-id config → (training set, augmentation, input spec of the
    exported model, held-out people or None)."""
    if not d.get("root"):
        raise FaceForgeError("data: give `root`, a folder of person sub-folders of body crops")
    height, width = _input(d)
    folder = scan_body_folder(d["root"], d.get("camera", "cuhk03"))
    train_idx, val_idx = split_people(folder, float(d.get("val_people", 0.1)), seed)
    dataset = BodyDataset(folder, height, width, train_idx)
    held = BodyDataset(folder, height, width, val_idx) if len(val_idx) else None
    aug = d.get("augment", {})
    if aug is None or aug is False:
        transform = None
    elif isinstance(aug, dict):
        transform = reid_train_augment(**aug)
    else:
        raise FaceForgeError("data.augment of a re-id config is a mapping (pad, erase, colour) or null")
    spec = InputSpec("body", height, color="RGB", mean=127.5, std=127.5, width=width)
    return dataset, transform, spec, held
