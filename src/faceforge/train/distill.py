"""Knowledge distillation on the one Trainer: what the `distill:` section of a config adds.

    distill:
      teacher: {checkpoint: runs/teacher_fc/best.pt, root: chips150/}   # a trained backbone + FC
      # or {backbone: r50, weights: r50.safetensors}, or {embeddings: teacher.parquet,
      #    head: runs/teacher_fc/best.pt}; `teachers: [..., ...]` for an ensemble
      kd: {weight: 100, temperature: 2, alpha: [0.99, 0.0099], scale: null}
      features: {weight: 100, student_layer: layers.0, teacher_layer: conv1}
      embedding: {weight: 1.0, loss: cosine}

The loss of a step is (1 − α)·CE + w_kd·α·KD + w_f·MSE + w_e·E, where CE is the head's loss
on the labelled rows, KD the temperature-scaled KL between the teacher's and the student's
un-margined logits (models.losses.distill.logit_kd), MSE the early-feature match, E the
embedding match, and α follows a cosine from its first to its last value over the epochs
(α is 0, so CE keeps weight 1, when there is no logit term). The teacher is frozen and
outside DDP; the adapters and projections are trained with the head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.models.losses.distill import EmbeddingMatch, FeatureMatch, logit_kd
from faceforge.train.teachers import Teacher, TeacherOutput


@dataclass
class DistillConfig:
    kd_weight: float = 0.0
    temperature: float = 2.0
    alpha: tuple[float, float] = (0.99, 0.0099)
    scale: float | None = None           # the logits' scale; default: the student head's s
    feature_weight: float = 0.0
    student_layer: str | None = None
    teacher_layer: str | None = None
    embedding_weight: float = 0.0
    embedding_loss: str = "cosine"

    @classmethod
    def from_section(cls, d: dict) -> DistillConfig:
        known = {"teacher", "teachers", "kd", "features", "embedding"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise FaceForgeError(f"unknown distill options {unknown}; known: {sorted(known)}")
        kd, feat, emb = d.get("kd") or {}, d.get("features") or {}, d.get("embedding") or {}
        for name, sec, keys in (("kd", kd, {"weight", "temperature", "alpha", "scale"}),
                                ("features", feat, {"weight", "student_layer", "teacher_layer"}),
                                ("embedding", emb, {"weight", "loss"})):
            bad = sorted(set(sec) - keys)
            if bad:
                raise FaceForgeError(f"unknown distill.{name} options {bad}; known: {sorted(keys)}")
        alpha = kd.get("alpha", (0.99, 0.0099))
        if not isinstance(alpha, (list, tuple)) or len(alpha) != 2:
            raise FaceForgeError(f"distill.kd.alpha is [first, last], not {alpha!r}")
        if emb.get("loss", "cosine") not in ("cosine", "mse"):
            raise FaceForgeError(f"distill.embedding.loss is cosine or mse, not {emb.get('loss')!r}")
        cfg = cls(kd_weight=float(kd.get("weight", 0.0)), temperature=float(kd.get("temperature", 2.0)),
                  alpha=(float(alpha[0]), float(alpha[1])), scale=kd.get("scale"),
                  feature_weight=float(feat.get("weight", 0.0)), student_layer=feat.get("student_layer"),
                  teacher_layer=feat.get("teacher_layer"), embedding_weight=float(emb.get("weight", 0.0)),
                  embedding_loss=emb.get("loss", "cosine"))
        if not (cfg.kd_weight or cfg.feature_weight or cfg.embedding_weight):
            raise FaceForgeError("distill: give a weight > 0 to at least one of kd, features, embedding")
        if cfg.feature_weight and not (cfg.student_layer and cfg.teacher_layer):
            raise FaceForgeError("distill.features needs student_layer and teacher_layer (module names)")
        return cfg


def cosine_alpha(first: float, last: float, epoch: int, epochs: int) -> float:
    """first at epoch 0, last at the final epoch, a half cosine in between."""
    if epochs <= 1:
        return first
    return last + (first - last) * 0.5 * (1 + math.cos(math.pi * epoch / (epochs - 1)))


class Distiller(nn.Module):
    """The trainable parts of distillation (feature adapter, embedding projection) and the
    rule that combines the losses. The teacher is held but not registered as a submodule:
    it is neither trained nor saved in the student's checkpoints."""

    def __init__(self, cfg: DistillConfig, teacher: Teacher, student: nn.Module, student_dim: int,
                 probe: tuple[torch.Tensor, np.ndarray, torch.Tensor]) -> None:
        """`probe`: one sample's dataset index, crop and preprocessed tensor, to size the
        feature adapter."""
        super().__init__()
        self.cfg = cfg
        object.__setattr__(self, "teacher", teacher)
        self._student_features: torch.Tensor | None = None
        if cfg.kd_weight and teacher.num_classes is None:
            raise FaceForgeError("logit distillation needs a teacher with a head for the training identities "
                                 "(teacher: {checkpoint: ...} or {embeddings: ..., head: ...})")
        self.embedding = EmbeddingMatch(student_dim, teacher.dim, cfg.embedding_loss) if cfg.embedding_weight else None
        self.features = None
        if cfg.feature_weight:
            modules = dict(student.named_modules())
            if cfg.student_layer not in modules:
                raise FaceForgeError(f"student has no layer {cfg.student_layer!r}; some of its layers: "
                                     f"{[n for n in modules if n][:12]}")
            modules[cfg.student_layer].register_forward_hook(
                lambda m, i, o: setattr(self, "_student_features", o))
            index, images, x = probe
            with torch.no_grad():
                was = student.training
                student.eval()
                student(x)
                student.train(was)
            t = teacher(index, images, want_features=True).features
            self.features = FeatureMatch(self._student_features.shape[1], t.shape[1])

    def alpha(self, epoch: int, epochs: int) -> float:
        return cosine_alpha(*self.cfg.alpha, epoch, epochs) if self.cfg.kd_weight else 0.0

    def loss(self, ce: torch.Tensor, emb: torch.Tensor, student_logits, teacher: TeacherOutput,
             epoch: int, epochs: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The step's total loss and its parts (for logging)."""
        c = self.cfg
        a = self.alpha(epoch, epochs)
        total = (1.0 - a) * ce
        parts = {"ce": float(ce.detach()), "alpha": a}
        if c.kd_weight:
            kd = logit_kd(student_logits(emb), teacher.logits.to(emb.device), c.temperature)
            total = total + c.kd_weight * a * kd
            parts["kd"] = float(kd.detach())
        if self.features is not None:
            # float: under AMP the hooked map is half precision, the adapter is not
            mse = self.features(self._student_features.float(), teacher.features.to(emb.device).float())
            total = total + c.feature_weight * mse
            parts["feature_mse"] = float(mse.detach())
        if self.embedding is not None:
            e = self.embedding(emb, teacher.embedding.to(emb.device))
            total = total + c.embedding_weight * e
            parts["embedding"] = float(e.detach())
        return total, parts

