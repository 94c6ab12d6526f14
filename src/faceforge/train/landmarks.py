"""The landmark task of the Trainer: data, augmentation, validation and the builder.

Each face is warped to the network's input by one
similarity transform that also moves its points, so image and labels can never disagree.

Augmentation (`LandmarkAugment`): rotation (±30° by default), scale, translation, a
left-right flip that swaps the left and right points (eyes, mouth corners) after mirroring,
then colour changes (gamma, contrast, saturation), grayscale and blur on the warped image.
Grayscale is there because black-and-white photos are where a colour-only landmarker fails.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from faceforge.core.errors import FaceForgeError
from faceforge.io.images import load_image
from faceforge.landmarks.geometry import apply_matrix, fit_matrix
from faceforge.landmarks.labels import FLIP_ORDER, LandmarkSample
from faceforge.landmarks.metrics import score_predictions
from faceforge.landmarks.predict import predict_points
from faceforge.train.augment import (
    RandomApply,
    contrast,
    gamma,
    gaussian_blur,
    grayscale,
    saturation,
)
from faceforge.train.trainer import Trainer


def warp_face(image: np.ndarray, points: np.ndarray, m: np.ndarray, size: int, flip: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """The warped image and its points; with flip (m must then contain the mirror) the
    points are also renumbered so that "left eye" is again the image-left eye."""
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    pts = apply_matrix(points, m)
    if flip:
        pts = pts[list(FLIP_ORDER)]
    return out, pts


@dataclass
class LandmarkAugment:
    max_angle: float = 30.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.05  # of the input size
    flip: float = 0.5
    colour: float = 0.5
    gray: float = 0.2
    blur: float = 0.1

    def geometry(self, rng: np.random.Generator, size: int) -> dict:
        return {"angle_deg": float(rng.uniform(-self.max_angle, self.max_angle)),
                "scale": float(rng.uniform(*self.scale)),
                "shift": tuple(float(v) for v in rng.uniform(-self.max_shift, self.max_shift, 2) * size),
                "flip": bool(rng.random() < self.flip)}

    def photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in (RandomApply(gamma(), self.colour), RandomApply(contrast(), self.colour),
                  RandomApply(saturation(), self.colour), RandomApply(grayscale, self.gray),
                  RandomApply(gaussian_blur(0.5, 2.0), self.blur)):
            image = t(image, rng)
        return image


class LandmarkDataset(torch.utils.data.Dataset):
    """Faces with their points, warped to the network's input: `dataset[i]` is the plain
    resized (image, points); the Trainer calls `augmented_item(i, rng)` with the (seed, epoch, index)
    generator, which augments image and points together, so a resumed run sees the same
    inputs."""

    def __init__(self, samples: Sequence[LandmarkSample], size: int = 128,
                 augment: LandmarkAugment | None = None) -> None:
        self.samples, self.size, self.augment = list(samples), size, augment

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> tuple[np.ndarray, LandmarkSample]:
        s = self.samples[i]
        return load_image(s.path), s

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image, s = self._load(i)
        h, w = image.shape[:2]
        return warp_face(image, s.points, fit_matrix(w, h, self.size), self.size)

    def augmented_item(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.augment is None:
            return self[i]
        image, s = self._load(i)
        h, w = image.shape[:2]
        g = self.augment.geometry(rng, self.size)
        img, pts = warp_face(image, s.points, fit_matrix(w, h, self.size, **g), self.size, g["flip"])
        return self.augment.photometric(img, rng), pts


class LandmarkValidation:
    """At each epoch's end: NME, failure rate and CED AUC@0.1 of the network on held-out faces
    (un-augmented). `val_auc` (higher is better) is what `best_metric` picks by default."""

    def __init__(self, dataset: LandmarkDataset, prefix: str = "val", batch_size: int = 64) -> None:
        self.prefix, self.batch_size = prefix, batch_size
        items = [dataset[i] for i in range(len(dataset))]
        self.crops = np.stack([c for c, _ in items])
        self.points = np.stack([p for _, p in items])

    def evaluate(self, net: torch.nn.Module, device: torch.device | str = "cpu") -> dict[str, float]:
        pred, _ = predict_points(net, self.crops, device, self.batch_size)
        r, _ = score_predictions(pred, self.points)
        return {f"{self.prefix}_nme": r["nme"], f"{self.prefix}_failure_rate": r["failure_rate"],
                f"{self.prefix}_auc": r["auc_0.1"]}

    def on_epoch_end(self, trainer, epoch: int) -> dict[str, float]:
        return self.evaluate(trainer.backbone, trainer.device)


LANDMARK_TRAIN_DEFAULTS = {"batch_size": 32, "optimizer": "adamw", "lr": 1e-3, "min_lr": 1e-4,
                           "weight_decay": 0.0, "grad_clip": None, "best_metric": "val_auc",
                           "tensorboard": False}
"""The reference recipe: Adam at 1e-3, cosine to 1e-4 by step, batches of 32."""


def split_validation(samples: list[LandmarkSample], fraction: float, seed: int = 0
                     ) -> tuple[list[LandmarkSample], list[LandmarkSample]]:
    """(train, val): a fixed random `fraction` of the faces held out for model selection."""
    if not 0.0 < fraction < 1.0:
        raise FaceForgeError(f"data.val_fraction must be in (0, 1), not {fraction}")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = max(1, int(round(fraction * len(samples))))
    val = set(order[:n_val].tolist())
    return [s for i, s in enumerate(samples) if i not in val], [s for i, s in enumerate(samples) if i in val]


def build_landmark_trainer(cfg: dict, callbacks: Sequence = (), **overrides) -> Trainer:
    """The `task: landmarks` config:

        model: {network: hourglass, input_size: 128, channels: 32, stacks: 3, depth: 2}
        loss:  {sigma: 2.0, trim: 0.0}         # trim: share of each batch's worst faces left out
        data:  {list: train.txt, root: null, val_list: null, val_fraction: 0.1,
                augment: {max_angle: 30, flip: 0.5, gray: 0.2, ...}}   # augment: false for none
        train: {...}                          # any TrainConfig field; defaults: the reference's
    """
    from faceforge.landmarks.hourglass import create_landmark_network
    from faceforge.landmarks.labels import read_landmark_list
    from faceforge.models.losses.heatmap import HeatmapLoss
    from faceforge.train.config import train_config
    m, d = dict(cfg.get("model") or {}), cfg.get("data") or {}
    tcfg = train_config({**LANDMARK_TRAIN_DEFAULTS, **(cfg.get("train") or {}), **overrides})
    if not d.get("list"):
        raise FaceForgeError("data: give `list`, a landmark list (path x1..x5 y1..y5 per line)")
    samples = read_landmark_list(d["list"], root=d.get("root"))
    if d.get("val_list"):
        train, val = samples, read_landmark_list(d["val_list"], root=d.get("root"))
    else:
        train, val = split_validation(samples, float(d.get("val_fraction", 0.1)), tcfg.seed)
    name = m.pop("network", "hourglass")
    torch.manual_seed(tcfg.seed)  # the initial weights are part of the recipe
    aug = d.get("augment", {})
    try:
        net = create_landmark_network(name, **m)
        augment = None if aug is False else LandmarkAugment(**(aug if isinstance(aug, dict) else {}))
        loss = HeatmapLoss(**(cfg.get("loss") or {}))
    except (TypeError, ValueError) as exc:
        raise FaceForgeError(f"landmark config: {exc} (model, data.augment and loss options)") from None
    size = int(getattr(net, "input_size", m.get("input_size", 128)))
    identity = {"task": "landmarks", "network": name, "network_kwargs": m, "points": int(net.num_points)}
    trainer = Trainer(net, loss, LandmarkDataset(train, size, augment), tcfg,
                      callbacks=[*callbacks, LandmarkValidation(LandmarkDataset(val, size))], identity=identity)
    plain = LandmarkDataset(train, size)  # the points as the network sees them, un-augmented
    mean_shape = np.mean([plain[i][1] for i in range(len(plain))], axis=0)
    trainer.input_spec = {"size": size, "normalisation": "x / 127.5 - 1", "color": "RGB",
                          "mean_shape": mean_shape.round(3).tolist()}
    return trainer


def export_landmark_checkpoint(checkpoint: str | Path, output: str | Path) -> dict:
    """A landmark run's checkpoint (last.pt / best.pt) as safetensors + `<name>.card.json`:
    the network, its input size, the training faces' mean shape (how the pipeline crops a
    detected face) and the validation figures of the epoch it holds."""
    import json

    from faceforge.landmarks.hourglass import create_landmark_network
    from faceforge.landmarks.landmarker import LandmarkCard, card_file
    from faceforge.models.export import export_safetensors
    from faceforge.models.weights import load_state
    from faceforge.train.checkpoint import load_checkpoint
    ck = load_checkpoint(checkpoint)
    ident, spec = ck.get("identity") or {}, ck.get("input") or {}
    if ident.get("task") != "landmarks" or "mean_shape" not in spec:
        raise FaceForgeError("not a landmark training checkpoint (task: landmarks)", checkpoint)
    net = create_landmark_network(ident["network"], **ident.get("network_kwargs", {}))
    load_state(net, ck["backbone"], "landmark network", checkpoint)
    rows = [json.loads(ck["metrics"])] if "metrics" in ck else json.loads(ck.get("history", "[]"))
    row = rows[-1] if rows else {}
    path = export_safetensors(net, output, {"identity": ident})
    card = LandmarkCard(name=Path(output).stem, network=ident["network"],
                        network_kwargs=dict(ident.get("network_kwargs", {})), input_size=int(spec["size"]),
                        mean_shape=spec["mean_shape"], training=f"trained with faceforge from {Path(checkpoint).name}",
                        metrics={k: v for k, v in row.items() if isinstance(v, (int, float))},
                        licence="as the training data's", weights=Path(path).name)
    card.save(card_file(path))
    return {"format": "safetensors", "output": str(path), "card": str(card_file(path)), "task": "landmarks"}
