"""Export a trained backbone for deployment: ONNX (insightface-style) or safetensors."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write_bytes


def export_onnx(backbone: nn.Module, path: str | Path, input_size: int = 112, opset: int = 17) -> Path:
    """N×3×S×S input (RGB, normalised outside as (x − 127.5) / 127.5, which is what
    faceforge's and insightface's ONNX routers apply to a graph without Sub/Mul nodes),
    one N×D embedding output, dynamic batch."""
    if input_size != 112:
        raise FaceForgeError("ONNX export targets insightface-style 112×112 recognisers")
    import io
    backbone = backbone.eval().cpu()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(backbone, torch.zeros(1, 3, input_size, input_size), buf, dynamo=False,
                          input_names=["data"], output_names=["embedding"], opset_version=opset,
                          dynamic_axes={"data": {0: "batch"}, "embedding": {0: "batch"}})
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def export_safetensors(backbone: nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, save(state, metadata=meta))
    return Path(path)
