"""Evaluation during training, each epoch: verification accuracy on a held-out pair list, or
the re-id ranking of held-out people."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceforge.evaluate.inputs import read_pair_file
from faceforge.evaluate.verification import kfold_accuracy
from faceforge.io.images import load_image


@torch.no_grad()
def embed_images(backbone: torch.nn.Module, preprocess, device, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Raw embeddings of N×H×W×3 images in eval mode, the backbone's mode restored after."""
    was = backbone.training
    backbone.eval()
    out = [backbone(preprocess(images[i:i + batch_size]).to(device)).float().cpu().numpy()
           for i in range(0, len(images), batch_size)]
    backbone.train(was)
    return np.concatenate(out)


class VerificationCallback:
    """10-fold accuracy (folds by pair index) of the backbone on aligned image pairs."""

    def __init__(self, pairs_file: str | Path, root: str | Path, prefix: str = "val", batch_size: int = 64) -> None:
        self.pairs = read_pair_file(pairs_file)
        self.root, self.prefix, self.batch_size = Path(root), prefix, batch_size
        self.names = sorted({p for a, b, _ in self.pairs for p in (a, b)})
        self._images = np.stack([load_image(self.root / n) for n in self.names])

    def embed(self, backbone: torch.nn.Module, preprocess, device) -> dict[str, np.ndarray]:
        emb = embed_images(backbone, preprocess, device, self._images, self.batch_size)
        return dict(zip(self.names, emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)))

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


class ReidValidation:
    """Cross-camera rank-1 and mAP of held-out people (every image queries all the others;
    one person's images from the query's own camera do not count), and the accuracy and
    threshold of their cross-camera pairs, each epoch."""

    def __init__(self, images: np.ndarray, people, cameras, prefix: str = "val", batch_size: int = 64) -> None:
        self.images, self.prefix, self.batch_size = images, prefix, batch_size
        self.people, self.cameras = np.asarray(people), np.asarray(cameras)

    def embed(self, backbone: torch.nn.Module, preprocess, device) -> np.ndarray:
        return embed_images(backbone, preprocess, device, self.images, self.batch_size)

    def evaluate(self, backbone, preprocess, device) -> dict[str, float]:
        from faceforge.evaluate.reid import cosine_distance, cross_camera_pairs, pair_similarities, rank_cross_camera
        from faceforge.evaluate.verification import best_threshold
        emb = self.embed(backbone, preprocess, device)
        r = rank_cross_camera(cosine_distance(emb, emb), self.people, self.people, self.cameras, self.cameras)
        # the same-or-not threshold an exported model's card offers (galleries decide with it)
        a, b, same = cross_camera_pairs(self.people, self.cameras)
        threshold, acc = best_threshold(pair_similarities(emb, a, b), same)
        return {f"{self.prefix}_rank1": float(r.cmc[0]), f"{self.prefix}_map": r.mean_ap,
                f"{self.prefix}_pair_acc": float(acc), f"{self.prefix}_pair_threshold": float(threshold)}

    def on_epoch_end(self, trainer, epoch: int) -> dict[str, float]:
        return self.evaluate(trainer.backbone, trainer.preprocess, trainer.device)
