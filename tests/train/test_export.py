"""faceforge.train.export.export_checkpoint: a checkpoint's backbone, rebuilt and written, is
the trained network."""
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from faceforge.core.errors import FaceForgeError
from faceforge.models.backbones import create_backbone
from faceforge.train.checkpoint import save_checkpoint
from faceforge.train.export import export_checkpoint


def _checkpoint(path, name: str, kwargs: dict, model: torch.nn.Module) -> None:
    save_checkpoint(path, {"identity": {"backbone": name, "backbone_kwargs": kwargs, "num_classes": 3},
                           "backbone": model.state_dict()})


def test_safetensors_holds_the_trained_state_and_the_identity(tmp_path):
    torch.manual_seed(1)
    model = create_backbone("mbf", num_features=32, scale=1)
    _checkpoint(tmp_path / "best.pt", "mbf", {"num_features": 32, "scale": 1}, model)
    res = export_checkpoint(tmp_path / "best.pt", tmp_path / "m.safetensors", "safetensors")
    assert (res["format"], res["output"], res["backbone"]) == ("safetensors", str(tmp_path / "m.safetensors"), "mbf")
    state = load_file(str(tmp_path / "m.safetensors"))
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["backbone_kwargs"]) == {"num_features": 32, "scale": 1}


def test_onnx_computes_what_the_checkpoint_computes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(2)
    model = create_backbone("mbf", num_features=16, scale=1).eval()
    _checkpoint(tmp_path / "last.pt", "mbf", {"num_features": 16, "scale": 1}, model)
    export_checkpoint(tmp_path / "last.pt", tmp_path / "m.onnx", "onnx")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() < 1e-4


def test_shipped_weights_are_not_loaded_for_a_backbone_that_has_them(tmp_path, monkeypatch):
    """dlib-r29 is rebuilt with pretrained=False: the checkpoint's state replaces the shipped
    weights, so they are never read."""
    torch.manual_seed(3)
    model = create_backbone("dlib-r29", pretrained=False)
    _checkpoint(tmp_path / "best.pt", "dlib-r29", {}, model)

    def shipped(*args, **kwargs):
        raise AssertionError("the shipped dlib weights were loaded")
    monkeypatch.setattr("faceforge.models.embedders.DlibR29Embedder", shipped)
    export_checkpoint(tmp_path / "best.pt", tmp_path / "d.safetensors", "safetensors")
    state = load_file(str(tmp_path / "d.safetensors"))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_errors_name_the_problem(tmp_path):
    model = create_backbone("mbf", num_features=32, scale=1)
    save_checkpoint(tmp_path / "anon.pt", {"identity": {}, "backbone": model.state_dict()})
    with pytest.raises(FaceForgeError, match="does not say which backbone"):
        export_checkpoint(tmp_path / "anon.pt", tmp_path / "x.onnx", "onnx")
    with pytest.raises(FaceForgeError, match="unknown export format 'tflite'"):
        export_checkpoint(tmp_path / "anon.pt", tmp_path / "x.tflite", "tflite")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "x.tflite").exists()
