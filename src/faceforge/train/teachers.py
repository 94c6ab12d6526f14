"""Teachers for distillation: frozen models whose outputs a student learns to imitate.

A teacher answers for a batch (the samples' dataset indices and the student's crops) with
its embeddings and, when it has a classification layer for the training identities, its
un-margined logits; a network teacher can also return an early feature map.

- `ModelTeacher`: a torch backbone (any registered one, or a FaceForge checkpoint with its
  trained head), frozen and in eval mode, outside DDP, with its own preprocessing. It sees
  the student's crops, resized to its input size, or (`root`) its own crops of the same
  photos: a folder prepared in its template with the same relative paths.
- `PrecomputedTeacher`: embeddings in a Parquet (`faceforge embed`, or any table with `path`
  and `embedding` columns), found by `<folder>/<stem>`, so that a model that cannot run
  inside the training loop (sface-int8 under OpenCV, an ONNX file) can teach; optionally a
  checkpoint's head turns them into logits.
- `EnsembleTeacher`: several teachers' L2-normalised embeddings concatenated and divided by
  √n (a unit vector whose cosines are the mean of the members' cosines).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.io.images import load_image


@dataclass
class TeacherOutput:
    embedding: torch.Tensor              # N×D
    logits: torch.Tensor | None = None   # N×C scaled cosines, no margin
    features: torch.Tensor | None = None  # N×C×H×W, the chosen early layer


class Teacher(Protocol):
    dim: int
    num_classes: int | None

    def __call__(self, index: torch.Tensor, images: np.ndarray, want_features: bool = False) -> TeacherOutput: ...

    def to(self, device: torch.device) -> Teacher: ...


def _head_weight(head_state: dict, path: str | Path) -> torch.Tensor:
    """The class centres of a saved FC / Partial FC head (alone or inside a weighted sum)."""
    keys = [k for k in head_state if k == "weight" or k.endswith(".weight") and "margin" not in k]
    if len(keys) != 1 or head_state[keys[0]].ndim != 2:
        raise FaceForgeError("the checkpoint's head has no single class-centre matrix to give logits", path)
    return head_state[keys[0]].float()


class _CosineLogits:
    """s · cos(embedding, centre) for a trained head's centres."""

    def __init__(self, weight: torch.Tensor, scale: float) -> None:
        self.weight, self.scale = F.normalize(weight), float(scale)

    def __call__(self, emb: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(emb), self.weight.to(emb.device)) * self.scale


class ModelTeacher:
    def __init__(self, backbone: nn.Module, preprocess, dataset, device: torch.device, *,
                 head_weight: torch.Tensor | None = None, scale: float = 64.0, root: str | Path | None = None,
                 input_size: int | None = None, feature_layer: str | None = None) -> None:
        self.backbone = backbone.to(device).eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.preprocess, self.dataset, self.device = preprocess, dataset, device
        self.root = Path(root) if root else None
        if self.root is not None and not self.root.is_dir():
            raise FaceForgeError("teacher crop folder not found", self.root)
        self.input_size = input_size
        self.logits = _CosineLogits(head_weight, scale) if head_weight is not None else None
        self.num_classes = int(head_weight.shape[0]) if head_weight is not None else None
        self._features: torch.Tensor | None = None
        if feature_layer:
            modules = dict(self.backbone.named_modules())
            if feature_layer not in modules:
                raise FaceForgeError(f"teacher has no layer {feature_layer!r}; some of its layers: "
                                     f"{[n for n in modules if n][:12]}")
            modules[feature_layer].register_forward_hook(lambda m, i, o: setattr(self, "_features", o))
        self.dim = int(self(torch.tensor([0]), np.stack([dataset[0][0]])).embedding.shape[1])

    def to(self, device: torch.device) -> ModelTeacher:
        self.device = device
        self.backbone.to(device)
        return self

    def _crops(self, index: torch.Tensor, images: np.ndarray) -> np.ndarray:
        if self.root is not None:  # its own crops of the same photos
            crops = []
            for i in index.tolist():
                sample = Path(self.dataset.samples[i][0])
                if not sample.is_relative_to(self.dataset.root):
                    raise FaceForgeError(f"a teacher with its own crops (root: {self.root}) needs every "
                                         "training image under data.root; this one is not", sample)
                path = self.root / sample.relative_to(self.dataset.root)
                if not path.is_file():
                    raise FaceForgeError("the teacher's crop of a training image is missing", path)
                crops.append(load_image(path))
            return np.stack(crops)
        return images

    @torch.no_grad()
    def __call__(self, index: torch.Tensor, images: np.ndarray, want_features: bool = False) -> TeacherOutput:
        x = self.preprocess(self._crops(index, images)).to(self.device)
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        emb = self.backbone(x).float()
        return TeacherOutput(emb, self.logits(emb) if self.logits else None,
                             self._features if want_features else None)


class PrecomputedTeacher:
    def __init__(self, path: str | Path, keys: Sequence[str], *, head_weight: torch.Tensor | None = None,
                 scale: float = 64.0) -> None:
        from faceforge.io.embeddings import read_embeddings
        path = Path(path)
        table = read_embeddings(path)
        if "path" not in table.column_names or "embedding" not in table.column_names:
            raise FaceForgeError("teacher embeddings need `path` and `embedding` columns", path)
        first = np.ones(table.num_rows, bool)
        if "face_index" in table.column_names:  # a photo's first face is the one its crop shows
            first = np.asarray(table.column("face_index").to_numpy(zero_copy_only=False)) == 0
        rows: dict[str, int] = {}  # a training crop is found by its folder and name
        twice: dict[str, list[str]] = {}
        for r, (p, ok) in enumerate(zip(table.column("path").to_pylist(), first)):
            key = f"{Path(p).parent.name}/{Path(p).stem}"
            if ok and rows.setdefault(key, r) != r:
                twice.setdefault(key, [table.column("path")[rows[key]].as_py()]).append(p)
        ambiguous = [k for k in keys if k in twice]
        if ambiguous:
            k = ambiguous[0]
            raise FaceForgeError(f"{len(ambiguous)} training images match more than one teacher row by folder "
                                 f"and name (e.g. {k!r}: {', '.join(twice[k])})", path)
        missing = [k for k in keys if k not in rows]
        if missing:
            raise FaceForgeError(f"teacher embeddings lack {len(missing)} of the {len(keys)} training images "
                                 f"(e.g. {missing[:3]})", path)
        from faceforge.io.embeddings import embedding_matrix
        matrix = embedding_matrix(table)
        self.table = torch.from_numpy(np.ascontiguousarray(matrix[[rows[k] for k in keys]], dtype=np.float32))
        self.dim = int(self.table.shape[1])
        self.logits = _CosineLogits(head_weight, scale) if head_weight is not None else None
        self.num_classes = int(head_weight.shape[0]) if head_weight is not None else None

    def __call__(self, index: torch.Tensor, images: np.ndarray, want_features: bool = False) -> TeacherOutput:
        if want_features:
            raise FaceForgeError("precomputed embeddings have no feature maps: feature matching needs a "
                                 "network teacher (backbone or checkpoint)")
        emb = self.table[index.cpu()]
        return TeacherOutput(emb, self.logits(emb) if self.logits else None)

    def to(self, device: torch.device) -> PrecomputedTeacher:
        return self  # looked up on the CPU; the losses move what they use


class EnsembleTeacher:
    def __init__(self, members: Sequence[Teacher]) -> None:
        if len(members) < 2:
            raise FaceForgeError("an ensemble teacher needs at least two teachers")
        self.members = list(members)
        self.dim = sum(m.dim for m in self.members)
        self.num_classes = None

    def __call__(self, index: torch.Tensor, images: np.ndarray, want_features: bool = False) -> TeacherOutput:
        if want_features:
            raise FaceForgeError("an ensemble teacher gives embeddings only (no logits, no feature maps)")
        parts = [F.normalize(m(index, images).embedding.float().cpu()) for m in self.members]
        return TeacherOutput(torch.cat(parts, dim=1) / math.sqrt(len(parts)))

    def to(self, device: torch.device) -> EnsembleTeacher:
        self.members = [m.to(device) for m in self.members]
        return self


def build_teacher(section: dict, dataset, scale: float) -> Teacher:
    """A teacher from the `distill.teacher` mapping (or `distill.teachers`, a list, for an
    ensemble): `embeddings` (+ `head`), `checkpoint` (+ `root`), or `backbone` (+ `weights`,
    its build options, `root`, `head`)."""
    if section.get("teachers"):
        return EnsembleTeacher([_one_teacher(t, dataset, scale) for t in section["teachers"]])
    if not section.get("teacher"):
        raise FaceForgeError("distill: give `teacher` (or `teachers`, a list, for an ensemble)")
    return _one_teacher(section["teacher"], dataset, scale)


def _head_of(path: str | Path | None) -> torch.Tensor | None:
    if not path:
        return None
    from faceforge.train.checkpoint import load_checkpoint
    return _head_weight(load_checkpoint(path)["head"], path)


def _one_teacher(t: dict, dataset, scale: float) -> Teacher:
    from faceforge.models.backbones import create_backbone
    from faceforge.models.backbones.registry import create_untrained_backbone
    from faceforge.models.weights import load_state, load_weights
    from faceforge.train.checkpoint import load_checkpoint
    from faceforge.train.trainer import arcface_preprocess
    scale = float(t.get("scale", scale))
    if t.get("embeddings"):
        if not hasattr(dataset, "key"):
            raise FaceForgeError("precomputed teacher embeddings need an image-folder dataset (paths to match)")
        keys = [dataset.key(i) for i in range(len(dataset))]
        return PrecomputedTeacher(t["embeddings"], keys, head_weight=_head_of(t.get("head")), scale=scale)
    layer = t.get("feature_layer")
    if t.get("checkpoint"):
        path = Path(t["checkpoint"])
        ck = load_checkpoint(path)
        ident = ck.get("identity", {})
        backbone = create_untrained_backbone(ident.get("backbone", "mbf"), **ident.get("backbone_kwargs", {}))
        load_state(backbone, ck["backbone"], "teacher backbone", path)
        head = _head_weight(ck["head"], path)
        size = (ck.get("input") or {}).get("size")
    elif t.get("backbone"):
        kw = {k: v for k, v in t.items() if k not in ("backbone", "weights", "root", "head", "scale",
                                                       "feature_layer", "input_size")}
        backbone = create_backbone(t["backbone"], **kw)
        if t.get("weights"):
            load_weights(backbone, t["weights"])
        head, size = _head_of(t.get("head")), None
    else:
        raise FaceForgeError("a teacher is {embeddings: ...}, {checkpoint: ...} or {backbone: ...}")
    size = t.get("input_size", size)
    return ModelTeacher(backbone, getattr(backbone, "preprocess", arcface_preprocess), dataset, torch.device("cpu"),
                        head_weight=head, scale=scale, root=t.get("root"), input_size=size, feature_layer=layer)
