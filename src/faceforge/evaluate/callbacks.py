"""Evaluation during training: verification accuracy on a held-out pair list each epoch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceforge.evaluate.inputs import read_pair_file
from faceforge.evaluate.verification import kfold_accuracy
from faceforge.io.images import load_image


class VerificationCallback:
    """10-fold accuracy (folds by pair index) of the backbone on aligned image pairs."""

    def __init__(self, pairs_file: str | Path, root: str | Path, prefix: str = "val", batch_size: int = 64) -> None:
        self.pairs = read_pair_file(pairs_file)
        self.root, self.prefix, self.batch_size = Path(root), prefix, batch_size
        self.names = sorted({p for a, b, _ in self.pairs for p in (a, b)})
        self._images = np.stack([load_image(self.root / n) for n in self.names])

    @torch.no_grad()
    def embed(self, backbone: torch.nn.Module, preprocess, device) -> dict[str, np.ndarray]:
        was = backbone.training
        backbone.eval()
        out = []
        for i in range(0, len(self.names), self.batch_size):
            e = backbone(preprocess(self._images[i:i + self.batch_size]).to(device)).float()
            out.append(torch.nn.functional.normalize(e).cpu().numpy())
        backbone.train(was)
        return dict(zip(self.names, np.concatenate(out)))

    def evaluate(self, backbone, preprocess, device) -> dict[str, float]:
        emb = self.embed(backbone, preprocess, device)
        scores = np.array([emb[a] @ emb[b] for a, b, _ in self.pairs])
        same = np.array([s for _, _, s in self.pairs])
        res = kfold_accuracy(scores, same, np.arange(len(scores)) % 10)
        # the mean fold threshold is what an exported model's card offers as its default
        return {f"{self.prefix}_acc": res["accuracy_mean"], f"{self.prefix}_acc_std": res["accuracy_std"],
                f"{self.prefix}_threshold": float(np.mean(res["fold_thresholds"]))}

    def on_epoch_end(self, trainer, epoch: int) -> dict[str, float]:
        return self.evaluate(trainer.backbone, trainer.preprocess, trainer.device)
