"""OpenCV's SFace recogniser as a float PyTorch network, built from the int8 ONNX file.

The shipped graph (face_recognition_sface_2021dec_int8bq.onnx) quantises only its weights,
block-wise (one scale and zero point per block of 64 or 9 values); every activation is
float. Dequantising the weights once (w = (q - zero_point) · scale, per block) therefore
gives the very network OpenCV runs, and PyTorch can run it batched, on any device, instead
of one face at a time through FaceRecognizerSF.

The graph is a plain chain — scale the input, then Conv → BatchNorm → PReLU fourteen times
(a depthwise and a pointwise convolution per stage), BatchNorm, Dropout, Flatten, a linear
layer, BatchNorm — so it is rebuilt by walking the chain: each Conv absorbs the BatchNorm
after it, each other node becomes the matching layer. A node outside that set, or a graph
that branches, is refused rather than guessed.

Importing onnx and walking the graph cost about a second, more than a one-off
`faceforge verify a b` spends on its two faces, so `sface_network` keeps the built network
in the user's cache as safetensors (the layer list in its metadata), keyed by the ONNX
file's SHA-256, and later processes rebuild it from there without onnx.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceforge.core.data import cache_dir
from faceforge.core.errors import ModelLoadError
from faceforge.core.files import atomic_write_bytes, content_hash


def dequantize_blockwise(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int,
                         block_size: int) -> np.ndarray:
    """ONNX DequantizeLinear with blocked quantisation: along `axis`, values i·B … i·B+B-1
    share scale[i] and zero_point[i] (the other axes index scales one to one)."""
    idx = np.arange(q.shape[axis]) // block_size
    s = np.take(scale.astype(np.float32), idx, axis=axis)
    z = np.take(zero_point.astype(np.int32), idx, axis=axis)
    return ((q.astype(np.int32) - z) * s).astype(np.float32)


class _Scale(nn.Module):
    """y = (x - shift) · factor, the graph's own input normalisation."""

    def __init__(self, shift: float, factor: float) -> None:
        super().__init__()
        self.shift, self.factor = float(shift), float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) * self.factor


def _fold_bn(weight: np.ndarray, bias: np.ndarray | None, gamma, beta, mean, var, eps: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """A layer followed by eval-mode BatchNorm as one layer: w' = w·g/√(v+ε), b' = (b-m)·g/√(v+ε)+β."""
    k = gamma / np.sqrt(var + eps)
    b = np.zeros_like(mean) if bias is None else bias
    return (weight * k.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.float32), ((b - mean) * k + beta).astype(np.float32)


def load_sface_float(path: str | Path) -> nn.Sequential:
    """The SFace ONNX graph as an eval-mode nn.Sequential: N×3×112×112 RGB float in 0..255
    → N×128 raw embeddings."""
    import onnx
    from onnx import numpy_helper
    path = Path(path)
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:
        raise ModelLoadError(f"not a readable ONNX model: {exc}", path) from exc
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for n in graph.node:  # constants and weight dequantisation first: they only make tensors
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "DequantizeLinear":
            q, s, z = (values[i] for i in n.input)
            axis = attrs.get("axis", 1)
            values[n.output[0]] = dequantize_blockwise(q, s, z, axis, attrs.get("block_size", 0) or q.shape[axis])
        elif n.op_type == "Reshape" and n.input[0] in values:
            values[n.output[0]] = values[n.input[0]].reshape(values[n.input[1]])
        elif n.op_type == "Constant":
            values[n.output[0]] = numpy_helper.to_array(attrs["value"])
        else:
            nodes.append((n, attrs))

    layers: list[nn.Module] = []
    current = graph.input[0].name
    i, flat = 0, False  # flat: the data is N×C after a Flatten, N×C×H×W before
    while i < len(nodes):
        n, attrs = nodes[i]
        data = [x for x in n.input if x not in values]
        if data != [current]:
            raise ModelLoadError(f"node {n.name or n.op_type} does not continue the chain (inputs {list(n.input)})", path)
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        bn = nxt if nxt is not None and nxt[0].op_type == "BatchNormalization" and nxt[0].input[0] == n.output[0] else None
        op = n.op_type
        if op == "Sub" and nxt is not None and nxt[0].op_type == "Mul":
            mul = nxt[0]
            layers.append(_Scale(values[n.input[1]].item(), values[mul.input[1]].item()))
            current, i = mul.output[0], i + 2
            continue
        if op in ("Conv", "Gemm"):
            w = values[n.input[1]]
            b = values[n.input[2]] if len(n.input) > 2 else None
            if op == "Gemm" and (attrs.get("transA", 0) or not attrs.get("transB", 0)
                                 or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
                raise ModelLoadError(f"Gemm {n.name} with attributes {attrs} is not a linear layer", path)
            if bn is not None:
                gamma, beta, mean, var = (values[x] for x in bn[0].input[1:])
                w, b = _fold_bn(w, b, gamma, beta, mean, var, bn[1].get("epsilon", 1e-5))
            if op == "Conv":
                if attrs.get("dilations", [1, 1]) != [1, 1] or len(set(attrs.get("pads", [0]))) != 1:
                    raise ModelLoadError(f"Conv {n.name} with attributes {attrs} is not supported", path)
                layer = nn.Conv2d(w.shape[1] * attrs.get("group", 1), w.shape[0], tuple(w.shape[2:]),
                                  stride=tuple(attrs.get("strides", [1, 1])), padding=attrs.get("pads", [0])[0],
                                  groups=attrs.get("group", 1), bias=b is not None)
            else:
                layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            layer.weight.data = torch.from_numpy(np.ascontiguousarray(w))
            if b is not None:
                layer.bias.data = torch.from_numpy(np.ascontiguousarray(b))
            layers.append(layer)
            current = (bn or (n,))[0].output[0]
            i += 2 if bn is not None else 1
            continue
        if op == "BatchNormalization":  # one that no Conv or Gemm absorbed
            gamma, beta, mean, var = (torch.from_numpy(values[x].copy()) for x in n.input[1:])
            layer = (nn.BatchNorm1d if flat else nn.BatchNorm2d)(len(gamma), eps=attrs.get("epsilon", 1e-5))
            layer.weight.data, layer.bias.data = gamma, beta
            layer.running_mean.data, layer.running_var.data = mean, var
            layers.append(layer)
        elif op == "PRelu":
            slope = values[n.input[1]].reshape(-1)
            layer = nn.PReLU(len(slope))
            layer.weight.data = torch.from_numpy(slope.copy())
            layers.append(layer)
        elif op == "Dropout":
            layers.append(nn.Identity())  # inference: dropout does nothing
        elif op == "Flatten":
            if attrs.get("axis", 1) != 1:
                raise ModelLoadError(f"Flatten {n.name} on axis {attrs['axis']} is not supported", path)
            layers.append(nn.Flatten(1))
            flat = True
        else:
            raise ModelLoadError(f"ONNX operator {op} ({n.name}) is not supported by the float port", path)
        current = n.output[0]
        i += 1
    if current != graph.output[0].name:
        raise ModelLoadError(f"the chain ends at {current}, not at the graph output {graph.output[0].name}", path)
    return nn.Sequential(*layers).eval()


def sface_network(path: str | Path) -> nn.Sequential:
    """load_sface_float, through the cache: a cached copy of this very file is read back; a
    missing, unreadable or mismatched one is rebuilt and written again (a cache that cannot
    be written is skipped)."""
    path = Path(path)
    digest = content_hash(path)
    cached = cache_dir() / "sface" / f"float-{digest[:16]}.safetensors"
    if cached.is_file():
        try:
            return _read_cached(cached, digest)
        except Exception:  # damaged, or written by another version: made again below
            pass
    model = load_sface_float(path)
    try:
        _write_cached(model, cached, digest)
    except OSError:
        pass
    return model


def _spec(layer: nn.Module) -> dict:
    if isinstance(layer, _Scale):
        return {"type": "scale", "shift": layer.shift, "factor": layer.factor}
    if isinstance(layer, nn.Conv2d):
        return {"type": "conv", "in": layer.in_channels, "out": layer.out_channels, "kernel": list(layer.kernel_size),
                "stride": list(layer.stride), "padding": layer.padding[0], "groups": layer.groups,
                "bias": layer.bias is not None}
    if isinstance(layer, nn.Linear):
        return {"type": "linear", "in": layer.in_features, "out": layer.out_features, "bias": layer.bias is not None}
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return {"type": "bn1d" if isinstance(layer, nn.BatchNorm1d) else "bn2d", "n": layer.num_features,
                "eps": layer.eps}
    if isinstance(layer, nn.PReLU):
        return {"type": "prelu", "n": layer.num_parameters}
    if isinstance(layer, (nn.Identity, nn.Flatten)):
        return {"type": "identity" if isinstance(layer, nn.Identity) else "flatten"}
    raise ModelLoadError(f"no cache form for {type(layer).__name__}", "the SFace port")


def _layer(spec: dict) -> nn.Module:
    kind = spec["type"]
    if kind == "scale":
        return _Scale(spec["shift"], spec["factor"])
    if kind == "conv":
        return nn.Conv2d(spec["in"], spec["out"], tuple(spec["kernel"]), stride=tuple(spec["stride"]),
                         padding=spec["padding"], groups=spec["groups"], bias=spec["bias"])
    if kind == "linear":
        return nn.Linear(spec["in"], spec["out"], bias=spec["bias"])
    if kind in ("bn1d", "bn2d"):
        return (nn.BatchNorm1d if kind == "bn1d" else nn.BatchNorm2d)(spec["n"], eps=spec["eps"])
    if kind == "prelu":
        return nn.PReLU(spec["n"])
    return {"identity": nn.Identity, "flatten": lambda: nn.Flatten(1)}[kind]()


def _write_cached(model: nn.Sequential, path: Path, digest: str) -> None:
    from safetensors.torch import save
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"source_sha256": digest, "layers": json.dumps([_spec(m) for m in model])}
    atomic_write_bytes(path, save(state, metadata=meta))


def _read_cached(path: Path, digest: str) -> nn.Sequential:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if meta.get("source_sha256") != digest:
            raise ValueError("made from another file")
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = nn.Sequential(*(_layer(s) for s in json.loads(meta["layers"])))
    model.load_state_dict(state, strict=True)
    return model.eval()
