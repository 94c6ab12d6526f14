"""Deep mutual learning (Zhang et al. 2018): two students that teach each other.

    model: {backbone: mbf, num_features: 128}
    peer:  {backbone: mbf, num_features: 128}      # the second model (default: as `model`)
    mutual: {mode: synchronous, weight: 1.0, temperature: 1.0}
    # or {mode: sequential, temperature: 6, alpha_epochs: 25}

Synchronous: loss = CE₁ + CE₂ + w·T²·(KL(p₂ ‖ p₁) + KL(p₁ ‖ p₂)) at temperature T (default
1), each KL pulling one model towards the other's (detached) distribution; one backward, and the one optimiser steps both
models (SGD and AdamW are per-parameter, so this is two optimisers with equal settings).
Sequential: each step first updates model 1 against model 2 frozen (eval mode, no
gradient), then model 2 against the updated model 1, each with α·CE + (1 − α)·T²·KL at
temperature T, α = 1 − (epoch + 0.1)/alpha_epochs (clamped to [0, 1]). Distributions are
softmaxes of each model's un-margined logits (scaled cosines). Both models live in one
checkpoint (resumable) and each is also written on its own under `model1/`, `model2/` in the
ordinary single-model format, so `faceforge export` takes either (both `best.pt` are taken
at the epoch `train.best_metric` chooses, e.g. `val_acc_model1`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.models.heads.base import Head
from faceforge.models.losses.distill import logit_kd
from faceforge.train.checkpoint import save_checkpoint
from faceforge.train.trainer import Trainer


@dataclass
class MutualConfig:
    mode: str = "synchronous"   # synchronous | sequential
    weight: float = 1.0         # synchronous: w of the two KL terms
    temperature: float = 1.0
    alpha_epochs: float = 25.0  # sequential: α = 1 − (epoch + 0.1) / alpha_epochs

    @classmethod
    def from_section(cls, d: dict) -> MutualConfig:
        known = {"mode", "weight", "temperature", "alpha_epochs"}
        if set(d) - known:
            raise FaceForgeError(f"unknown mutual options {sorted(set(d) - known)}; known: {sorted(known)}")
        cfg = cls(**d)
        if cfg.mode not in ("synchronous", "sequential"):
            raise FaceForgeError(f"mutual.mode must be synchronous or sequential, not {cfg.mode!r}")
        return cfg

    def alpha(self, epoch: int) -> float:
        return float(np.clip(1.0 - (epoch + 0.1) / self.alpha_epochs, 0.0, 1.0))


class ModelPair(nn.Module):
    """Two backbones seen as one: the output is both embeddings side by side."""

    def __init__(self, first: nn.Module, second: nn.Module, dims: tuple[int, int]) -> None:
        super().__init__()
        self.models = nn.ModuleList([first, second])
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.models], dim=1)


class MutualHead(Head):
    """One classification head per model and the synchronous mutual loss."""

    def __init__(self, first: nn.Module, second: nn.Module, dims: tuple[int, int], cfg: MutualConfig) -> None:
        super().__init__()
        for h in (first, second):
            if not hasattr(h, "class_logits"):
                raise FaceForgeError("mutual learning needs full FC or softmax heads (their un-margined logits "
                                     "are compared), not Partial FC or a weighted sum")
        self.heads = nn.ModuleList([first, second])
        self.dims, self.cfg = dims, cfg

    def split(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return emb[:, :self.dims[0]], emb[:, self.dims[0]:]

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        e1, e2 = self.split(emb)
        h1, h2 = self.heads
        l1, l2 = h1.class_logits(e1), h2.class_logits(e2)
        t = self.cfg.temperature
        mutual = logit_kd(l1, l2.detach(), t) + logit_kd(l2, l1.detach(), t)
        return h1(e1, labels) + h2(e2, labels) + self.cfg.weight * mutual


class MutualTrainer(Trainer):
    """The Trainer over a ModelPair and a MutualHead; sequential mode replaces the step."""

    def __init__(self, *args, member_identities: tuple[dict, dict], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.members = member_identities
        if self.distributed and self.head.cfg.mode == "sequential":
            raise FaceForgeError("sequential mutual learning runs in one process (use synchronous under DDP)")

    def train_step(self, images: np.ndarray, labels: torch.Tensor, accumulate: bool,
                   index: torch.Tensor | None = None) -> float:
        if self.head.cfg.mode == "synchronous":
            return super().train_step(images, labels, accumulate, index)
        if self.cfg.grad_accum != 1:
            raise FaceForgeError("sequential mutual learning does not accumulate gradients (grad_accum: 1)")
        x = self.preprocess(images).to(self.device)
        y = labels.to(self.device)
        losses = [self.member_step(i, x, y) for i in (0, 1)]
        self.scheduler.step()
        return float(np.mean(losses))

    def member_step(self, i: int, x: torch.Tensor, y: torch.Tensor) -> float:
        """Update model i against the other, which is frozen: eval mode and no gradient, so
        neither its parameters nor its BatchNorm statistics move."""
        models, heads, cfg = self.backbone.models, self.head.heads, self.head.cfg
        other = models[1 - i]
        was = other.training
        other.eval()
        with torch.no_grad():
            target = heads[1 - i].class_logits(other(x).float())
        other.train(was)
        emb = models[i](x).float()
        a = cfg.alpha(self.epoch)
        loss = a * heads[i](emb, y) + (1 - a) * logit_kd(heads[i].class_logits(emb), target, cfg.temperature)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(models[i].parameters(), self.cfg.grad_clip)
            nn.utils.clip_grad_norm_(heads[i].parameters(), self.cfg.grad_clip)
        self.optimizer.step()  # parameters without a gradient (the other model's) are left alone
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def save(self, name: str = "last.pt") -> Path:
        path = super().save(name)
        if self.rank == 0:
            for i in (0, 1):
                self._write_member(i, name, {"history": json.dumps([member_row(r, i) for r in self.history])})
        return path

    def _write_best(self, head_state: dict, row: dict) -> None:
        super()._write_best(head_state, row)
        for i in (0, 1):
            self._write_member(i, "best.pt", {"metrics": json.dumps(member_row(row, i))})

    def _write_member(self, i: int, name: str, extra: dict) -> None:
        save_checkpoint(self.out / f"model{i + 1}" / name, {
            "identity": self.members[i], "input": self.input_spec,
            "backbone": self.backbone.models[i].state_dict(), "head": self.head.heads[i].state_dict(),
            "step": self.step, "epoch": self.epoch, **extra})


def member_row(row: dict, i: int) -> dict:
    """A history row as model i's own: `val_acc_model2` → `val_acc` for model 2 (the other
    model's entries left out), so its checkpoint reads like a single model's."""
    mine, theirs = f"_model{i + 1}", f"_model{2 - i}"
    return {k.removesuffix(mine): v for k, v in row.items() if not k.endswith(theirs)}


class MemberVerification:
    """A verification callback run on each model of the pair: `<metric>_model1`, `_model2`."""

    def __init__(self, callback) -> None:
        self.callback = callback

    def on_epoch_end(self, trainer: MutualTrainer, epoch: int) -> dict[str, float]:
        out = {}
        for i, model in enumerate(trainer.backbone.models):
            res = self.callback.evaluate(model, trainer.preprocess, trainer.device)
            out.update({f"{k}_model{i + 1}": v for k, v in res.items()})
        return out
