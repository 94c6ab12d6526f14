"""MTCNN (Zhang et al. 2016) in PyTorch: P-Net over an image pyramid, R-Net and O-Net
refinement, five landmarks. Batched across images and device-explicit.

Weights: the pnet/rnet/onet state dicts shipped in the facenet-pytorch 2.6.0 wheel. That
package is never a dependency (its pins cannot be met); `make install` (or
`faceforge install-weights`) downloads the wheel and extracts the three
files into faceforge/_data/mtcnn/. They are read with torch.load(weights_only=True).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceforge.core.device import resolve_device
from faceforge.core.errors import ModelLoadError
from faceforge.vision.detectors.base import Detector, register_detector
from faceforge.vision.face import Face

WHEEL = "facenet-pytorch==2.6.0"
WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")


def mtcnn_weights_dir() -> Path:
    env = os.environ.get("FACEFORGE_MTCNN_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "_data" / "mtcnn"


def install_mtcnn_weights(target: Path | None = None, wheel: Path | None = None) -> Path:
    """Extract pnet/rnet/onet.pt from a facenet-pytorch wheel (downloaded with pip if not given)."""
    target = target or mtcnn_weights_dir()
    if all((target / f).is_file() for f in WEIGHT_FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary=:all:", WHEEL, "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("facenet_pytorch-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in WEIGHT_FILES:
                data = zf.read(f"facenet_pytorch/data/{name}")
                (target / name).write_bytes(data)
    return target


class _PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


class _RNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        # The weights came from a framework that flattened W before H.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(len(x), -1)))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class _ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(len(x), -1)))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


def _load(net: nn.Module, path: Path) -> nn.Module:
    if not path.is_file():
        raise ModelLoadError("MTCNN weights not found; run `make install` or "
                             "`faceforge install-weights` to extract them "
                             f"from the {WHEEL} wheel", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:  # corrupt file or wrong tensors
        raise ModelLoadError(f"cannot load MTCNN weights: {exc}", path) from exc
    return net.eval()


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; 'min' divides the overlap by the smaller box."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _batched_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float,
                 mode: str = "union") -> np.ndarray:
    keep = [np.flatnonzero(groups == g)[nms(boxes[groups == g], scores[groups == g], threshold, mode)]
            for g in np.unique(groups)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, 0:4] = boxes[:, 0:4] + reg * np.stack([w, h, w, h], 1)
    return out


@register_detector("mtcnn")
class MTCNNDetector(Detector):
    """Cascaded CNN detector. `min_size` is the smallest face searched for (pixels),
    `thresholds` the three stages' confidence cut-offs, `factor` the pyramid step."""

    def __init__(self, score_threshold: float = 0.7, min_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 device: str = "auto", weights_dir: str | Path | None = None, **kw) -> None:
        super().__init__(score_threshold=score_threshold, **kw)
        self.min_size, self.thresholds, self.factor = int(min_size), tuple(thresholds), float(factor)
        self.device = resolve_device(device)
        d = Path(weights_dir) if weights_dir else mtcnn_weights_dir()
        self.pnet = _load(_PNet(), d / "pnet.pt").to(self.device)
        self.rnet = _load(_RNet(), d / "rnet.pt").to(self.device)
        self.onet = _load(_ONet(), d / "onet.pt").to(self.device)

    def _to_tensor(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        arr = np.stack(images).astype(np.float32)
        return torch.from_numpy(arr).permute(0, 3, 1, 2).to(self.device)

    @staticmethod
    def _norm(x: torch.Tensor) -> torch.Tensor:
        return (x - 127.5) * 0.0078125

    def _crops(self, imgs: list[torch.Tensor], boxes: np.ndarray, inds: np.ndarray, size: int) -> torch.Tensor:
        """Square crops, zero-padded where they leave the image, resized to size×size."""
        out = []
        for (x1, y1, x2, y2), i in zip(boxes[:, :4].astype(np.int64), inds):
            img = imgs[i]
            h, w = img.shape[1:]
            bw, bh = max(int(x2 - x1 + 1), 1), max(int(y2 - y1 + 1), 1)
            crop = torch.zeros((3, bh, bw), device=self.device)
            sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2 + 1, w), min(y2 + 1, h)
            if sx2 > sx1 and sy2 > sy1:
                crop[:, sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = img[:, sy1:sy2, sx1:sx2]
            out.append(F.interpolate(crop[None], size=(size, size), mode="area"))
        return self._norm(torch.cat(out))

    @torch.inference_mode()
    def _detect_many(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        imgs = [self._to_tensor([im])[0] for im in images]
        all_boxes, all_inds = [], []
        # Stage 1: P-Net on a pyramid; images of equal size share forward passes.
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            by_shape.setdefault(im.shape[:2], []).append(i)
        for (h, w), idx in by_shape.items():
            batch = torch.stack([imgs[i] for i in idx])
            scale = 12.0 / self.min_size
            min_side = min(h, w) * scale
            stage = []
            while min_side >= 12:
                size = (int(h * scale + 1), int(w * scale + 1))
                reg, prob = self.pnet(self._norm(F.interpolate(batch, size=size, mode="area")))
                prob, reg = prob[:, 1].cpu().numpy(), reg.cpu().numpy()
                n, yy, xx = np.nonzero(prob >= self.thresholds[0])
                if len(n):
                    cell = np.stack([xx, yy], 1).astype(np.float32)
                    q1 = np.floor((2 * cell + 1) / scale)
                    q2 = np.floor((2 * cell + 12) / scale)
                    b = np.concatenate([q1, q2, prob[n, yy, xx][:, None], reg[n, :, yy, xx]], 1)
                    keep = _batched_nms(b[:, :4], b[:, 4], n, 0.5)
                    stage.append((b[keep], np.asarray(idx)[n[keep]]))
                scale *= self.factor
                min_side *= self.factor
            for b, ind in stage:
                all_boxes.append(b)
                all_inds.append(ind)
        results: list[list[Face]] = [[] for _ in images]
        if not all_boxes:
            return results
        boxes, inds = np.concatenate(all_boxes), np.concatenate(all_inds)
        keep = _batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes, inds = boxes[keep], inds[keep]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        boxes = np.concatenate([boxes[:, :4] + boxes[:, 5:9] * np.stack([w, h, w, h], 1), boxes[:, 4:5]], 1)
        boxes = _square(boxes)
        # Stage 2: R-Net.
        reg, prob = self.rnet(self._crops(imgs, np.trunc(boxes), inds, 24))
        score = prob[:, 1].cpu().numpy()
        ok = score > self.thresholds[1]
        boxes = np.concatenate([boxes[ok, :4], score[ok, None]], 1)
        inds, reg = inds[ok], reg.cpu().numpy()[ok]
        if not len(boxes):
            return results
        keep = _batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        inds = inds[keep]
        # Stage 3: O-Net, landmarks.
        boxes = np.trunc(boxes)
        reg, pts, prob = self.onet(self._crops(imgs, boxes, inds, 48))
        score = prob[:, 1].cpu().numpy()
        ok = score > self.thresholds[2]
        boxes, inds = np.concatenate([boxes[ok, :4], score[ok, None]], 1), inds[ok]
        reg, pts = reg.cpu().numpy()[ok], pts.cpu().numpy()[ok]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        lm = np.stack([bw[:, None] * pts[:, :5] + boxes[:, 0:1] - 1,
                       bh[:, None] * pts[:, 5:] + boxes[:, 1:2] - 1], 2)
        boxes = _regress(boxes, reg)
        keep = _batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7, mode="min")
        for b, i, p in zip(boxes[keep], inds[keep], lm[keep]):
            results[int(i)].append(Face(box=b[:4].astype(np.float32), score=float(b[4]),
                                        landmarks=p.astype(np.float32), detector=self.name))
        return results

