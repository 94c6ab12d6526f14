"""A trained landmark network as a pipeline stage: given faces a detector found, it crops
each one, predicts the five points and gives the faces back with those points, which
alignment then uses instead of the detector's own.

The crop is the similarity transform that puts the detector's five points on the mean
landmark shape of the training crops (`LandmarkCard.mean_shape`), so every detector's face is
framed the way training faces were, whatever its box convention; a face without points is
cropped as a square around its box. Predictions are mapped back through the inverse
transform. Weights are safetensors with a JSON card beside them (`<weights>.card.json`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from faceforge.core.errors import ModelLoadError
from faceforge.landmarks.geometry import invert_points
from faceforge.landmarks.hourglass import create_landmark_network
from faceforge.landmarks.predict import predict_points
from faceforge.vision.align import umeyama_similarity
from faceforge.vision.align import landmarks_plausible
from faceforge.vision.face import LANDMARK_NAMES, Face

# a heatmap peak below this (targets peak at 1; the shipped network's points on clean faces
# reach 0.78-1.0) means the network did not find the point
MIN_CONFIDENCE = 0.3
SHIPPED = Path(__file__).resolve().parent.parent / "_data" / "landmarks" / "hourglass.safetensors"


@dataclass
class LandmarkCard:
    """What a landmark model is and how to feed it."""
    name: str
    network: str
    network_kwargs: dict
    input_size: int
    mean_shape: list[list[float]]  # the training faces' mean points, in input pixels
    points: list[str] = field(default_factory=lambda: list(LANDMARK_NAMES))
    normalisation: str = "x / 127.5 - 1 (RGB)"
    training: str = ""
    metrics: dict = field(default_factory=dict)
    licence: str = "unknown"
    weights: str = ""

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LandmarkCard":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read landmark model card: {exc}", path) from None
        missing = [k for k in ("name", "network", "network_kwargs", "input_size", "mean_shape") if k not in d]
        if missing:
            raise ModelLoadError(f"landmark model card lacks {missing}", path)
        known = set(cls.__dataclass_fields__)
        shape = np.asarray(d["mean_shape"], dtype=np.float64)
        if shape.ndim != 2 or shape.shape[1] != 2:
            raise ModelLoadError(f"landmark model card: mean_shape must be K × 2, not {shape.shape}", path)
        return cls(**{k: v for k, v in d.items() if k in known})


def card_file(weights: str | Path) -> Path:
    weights = Path(weights)
    return weights.with_name(weights.stem + ".card.json")


class Landmarker:
    """Predicts points for detected faces. `Landmarker.load(path)` reads safetensors + card;
    `Landmarker.load()` the weights that ship with FaceForge."""

    def __init__(self, net: torch.nn.Module, card: LandmarkCard, device: str | torch.device = "cpu") -> None:
        from faceforge.core.device import resolve_device
        self.card, self.device = card, resolve_device(str(device))
        self.net = net.to(self.device).eval()
        self.size = int(card.input_size)
        self.mean_shape = np.asarray(card.mean_shape, np.float32)
        self.name = card.name

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | torch.device = "cpu") -> "Landmarker":
        weights = Path(weights) if weights else SHIPPED
        if not weights.is_file():
            raise ModelLoadError("landmark weights not found" + (
                " (the shipped hourglass is missing from this installation)" if weights == SHIPPED else ""), weights)
        card = LandmarkCard.load(card_file(weights))
        try:
            net = create_landmark_network(card.network, **card.network_kwargs)
        except TypeError as exc:
            raise ModelLoadError(f"landmark model card: bad network_kwargs for {card.network}: {exc}",
                                 card_file(weights)) from None
        try:
            from safetensors.torch import load_file
            state = load_file(str(weights))
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(f"landmark weights do not fit {card.network}: {str(exc).splitlines()[0]}",
                                 weights) from None
        except Exception as exc:
            raise ModelLoadError(f"cannot load landmark weights: {type(exc).__name__}: {str(exc)[:200]}",
                                 weights) from None
        return cls(net, card, device)

    def crop_matrix(self, face: Face) -> np.ndarray:
        """2×3 matrix from the image to this face's network input."""
        if face.landmarks is not None and len(face.landmarks) == len(self.mean_shape):
            return umeyama_similarity(np.asarray(face.landmarks, np.float64), self.mean_shape.astype(np.float64))
        x1, y1, x2, y2 = (float(v) for v in face.box)
        side = max(x2 - x1, y2 - y1)
        s = self.size / max(side, 1.0)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        c = (self.size - 1) / 2
        return np.array([[s, 0, c - s * cx], [0, s, c - s * cy]])

    def predict_crops(self, crops: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Points (N, K, 2) and confidences (N, K) on crops already at the input size."""
        return predict_points(self.net, crops, self.device, batch_size)

    def refine(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """The faces with their landmarks replaced by the network's (detector name + '+<name>');
        box and score stay the detector's. Where the network is unsure of a point (peak below
        MIN_CONFIDENCE: a face unlike its training faces, such as one deep in shadow) or its
        points fail the plausibility check, the face keeps the detector's points and name."""
        if not faces:
            return []
        mats = [self.crop_matrix(f) for f in faces]
        crops = np.stack([cv2.warpAffine(image, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT) for m in mats])
        pts, conf = self.predict_crops(crops)
        out = []
        for f, m, p, c in zip(faces, mats, pts, conf):
            points = invert_points(p, m)
            if c.min() < MIN_CONFIDENCE or not landmarks_plausible(points):
                out.append(f)
                continue
            out.append(replace(f, landmarks=points, native_landmarks=None, detector=f"{f.detector}+{self.name}"))
        return out


class RefinedDetector:
    """A detector followed by a landmark network: it finds faces as `detector` does and
    gives them the network's points, so anything that takes a detector (the pipeline,
    `prepare_aligned_dataset`) aligns with the learned landmarks. Other attributes are the
    detector's."""

    def __init__(self, detector, landmarker: Landmarker) -> None:
        self.detector, self.landmarker = detector, landmarker
        self.name = f"{detector.name}+{landmarker.name}"

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.landmarker.refine(image, self.detector.detect(image))

    def __getattr__(self, item: str):
        if item in ("detector", "landmarker") or item.startswith("__"):  # copy/pickle before __init__
            raise AttributeError(item)
        return getattr(self.detector, item)


def with_landmarker(detector, landmarker: "Landmarker | str | Path | None", device: str = "cpu"):
    """`detector` unchanged for None, else wrapped with the landmarker: "hourglass" (the
    shipped weights), a weights file, or a Landmarker."""
    if landmarker is None:
        return detector
    if not isinstance(landmarker, Landmarker):
        landmarker = Landmarker.load(None if str(landmarker) == "hourglass" else landmarker, device=device)
    return RefinedDetector(detector, landmarker)
