"""Losses that make a student imitate a teacher (knowledge distillation, mutual learning).

- `logit_kd`: Hinton's soft-target loss on un-margined logits, KL(teacher ‖ student) at
  temperature T, averaged over the batch and multiplied by T² so that its gradient keeps
  the scale of the hard-label loss when T changes.
- `FeatureMatch`: mean squared error between a student and a teacher feature map (an early
  layer); a learned 1×1 convolution maps the student's channels to the teacher's and the
  student map is resized to the teacher's when their sizes differ.
- `EmbeddingMatch`: the student's L2-normalised embedding against the teacher's, by
  1 − cosine or by squared distance; a learned linear projection maps the student's
  dimension to the teacher's when they differ. It needs no labels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def logit_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)) · T², mean over the batch."""
    t = float(temperature)
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


class FeatureMatch(nn.Module):
    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.adapter = (nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
                        if student_channels != teacher_channels else nn.Identity())

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s = self.adapter(student)
        if s.shape[-2:] != teacher.shape[-2:]:
            s = F.interpolate(s, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
        return F.mse_loss(s, teacher)


class EmbeddingMatch(nn.Module):
    def __init__(self, student_dim: int, teacher_dim: int, kind: str = "cosine") -> None:
        super().__init__()
        if kind not in ("cosine", "mse"):
            raise ValueError(f"embedding distillation loss must be cosine or mse, not {kind!r}")
        self.kind = kind
        self.projection = nn.Linear(student_dim, teacher_dim, bias=False) if student_dim != teacher_dim \
            else nn.Identity()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s, t = F.normalize(self.projection(student)), F.normalize(teacher)
        if self.kind == "cosine":
            return (1.0 - (s * t).sum(dim=1)).mean()
        return (s - t).pow(2).sum(dim=1).mean()
