import numpy as np
import pytest
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.io import load_image
from faceforge.models import create_embedder
from faceforge.models.embedders import EMBEDDERS
from faceforge.models.dlib_r29 import DlibResNet29
from faceforge.vision.detectors import create_detector

from ..conftest import lfw_image

NAMES = EMBEDDERS.names()


@pytest.fixture(scope="module")
def faces():
    det = create_detector("yunet")
    out = []
    for name, num in [("Colin_Powell", 1), ("Colin_Powell", 2), ("Angelina_Jolie", 1)]:
        img = load_image(lfw_image(name, num))
        out.append((img, det.detect(img)[0]))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_embedder_contract(name, faces):
    emb = create_embedder(name, device="cpu")
    crops = np.stack([emb.align(img, f) for img, f in faces])
    assert crops.shape == (3, *emb.empty_crops().shape[1:])
    e = emb.embed_crops(crops)
    assert e.shape == (3, emb.dim) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    same, diff = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert same > emb.threshold > diff
    # batching does not change results
    assert np.allclose(np.concatenate([emb.embed_crops(crops[:1]), emb.embed_crops(crops[1:])]), e, atol=1e-5)
    with pytest.raises(FaceForgeError, match="expects"):
        emb.embed_crops(crops[:, :100])
    assert emb.embed_crops(crops[:0]).shape == (0, emb.dim)


@pytest.mark.parametrize("name", NAMES)
def test_flip_test_averages_both_views(name, faces):
    plain = create_embedder(name, device="cpu")
    flip = create_embedder(name, device="cpu", flip=True)
    img, f = faces[0]
    crop = plain.align(img, f)[None]
    a, b = plain.embed_crops(crop), plain.embed_crops(plain.mirror(crop))
    if name == "sface+dlib-r29":  # each member's own flip test, then the concatenation
        parts = [((x + y) / np.linalg.norm(x + y)) for x, y in
                 ((a[:, :128] * np.sqrt(2), b[:, :128] * np.sqrt(2)), (a[:, 128:] * np.sqrt(2), b[:, 128:] * np.sqrt(2)))]
        expect = np.concatenate(parts, axis=1) / np.sqrt(2)
    else:
        expect = (a + b) / np.linalg.norm(a + b)
    assert np.allclose(flip.embed_crops(crop), expect, atol=1e-5)


def test_unknown_embedder():
    with pytest.raises(FaceForgeError, match="unknown embedder"):
        create_embedder("nope")


class _WithNorm(nn.Module):
    """A recogniser that normalises inside (the graph starts with Sub and Mul)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body((x - 127.5) * 0.0078125)


def _export(module: nn.Module, path, size: int = 112):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.zeros(1, 3, size, size), str(path), dynamo=False,
                          input_names=["data"], output_names=["fc1"], dynamic_axes={"data": {0: "n"}})


@pytest.mark.parametrize("inside", [True, False])
def test_onnx_embedder_detects_normalisation(tmp_path, faces, inside):
    torch.manual_seed(0)
    body = DlibResNet29().eval()
    path = tmp_path / "rec.onnx"
    _export(_WithNorm(body) if inside else body, path)
    emb = create_embedder(f"onnx:{path}")
    assert emb.spec.size == 112 and emb.spec.template == "arcface"
    assert (emb.spec.mean, emb.spec.std) == ((0.0, 1.0) if inside else (127.5, 127.5))
    crops = np.stack([emb.align(img, f) for img, f in faces])
    got = emb.embed_crops(crops)
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ref = body((x - 127.5) * 0.0078125) if inside else body((x - 127.5) / 127.5)
    ref = torch.nn.functional.normalize(ref).numpy()
    assert np.abs(got - ref).max() < 1e-4


def test_onnx_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        create_embedder(f"onnx:{tmp_path / 'missing.onnx'}")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        create_embedder(f"onnx:{bad}")


def test_sface_device_rules():
    assert create_embedder("sface", device="auto").name == "sface"
    assert create_embedder("sface", device="cpu").name == "sface"
    if not torch.cuda.is_available():
        with pytest.raises(FaceForgeError, match="cuda"):
            create_embedder("sface", device="cuda")  # no CUDA here: a clear error


def _calibration_crops() -> torch.Tensor:
    """16 aligned LFW faces of other people than the `faces` fixture's, normalised as the
    ArcFace-style backbones take them."""
    from ..conftest import LFW, need
    det, emb = create_detector("yunet"), create_embedder("sface-int8")
    people = sorted(p for p in need(LFW / "images").iterdir() if p.is_dir() and len(list(p.iterdir())) >= 4)[:8]
    crops = []
    for person in people:
        for f in sorted(person.iterdir())[:2]:
            img = load_image(f)
            crops.append(emb.align(img, max(det.detect(img), key=lambda x: x.area)))
    from faceforge.train.trainer import arcface_preprocess
    return arcface_preprocess(np.stack(crops))


def _exported(tmp_path, backbone: str = "mbf"):
    """A backbone written as users get it from `faceforge export`: weights and a card. Its
    BatchNorm statistics are recomputed on real faces first, so that its activations have
    the scale of a trained network's (a fresh one's shrink below half precision's range)."""
    from faceforge.models.backbones import create_backbone
    from faceforge.models.cards import ModelCard, backbone_input, card_path
    from faceforge.models.export import export_safetensors
    from faceforge.train.bn_finetune import recompute_bn_statistics
    torch.manual_seed(0)
    net = recompute_bn_statistics(create_backbone(backbone), _calibration_crops().split(8))
    weights = export_safetensors(net, tmp_path / f"{backbone}.safetensors")
    card = ModelCard(name=f"test-{backbone}", input=backbone_input(backbone, 112), embedding_dim=512,
                     backbone=backbone, weights=weights.name)
    card.save(card_path(weights))
    return weights


def test_half_precision_is_refused_off_a_gpu(tmp_path):
    from faceforge.models.embedders import load_embedder
    weights = _exported(tmp_path)
    with pytest.raises(FaceForgeError, match="unknown precision 'int4'"):
        load_embedder(weights, device="cpu", precision="int4")
    with pytest.raises(FaceForgeError, match="fp16 needs a CUDA device"):
        load_embedder(weights, device="cpu", precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision, least", [("fp16", 0.995), ("bf16", 0.99)])
def test_half_precision_on_cuda_agrees_with_float32_on_real_faces(tmp_path, faces, precision, least):
    from faceforge.models.embedders import load_embedder
    weights = _exported(tmp_path)
    ref = load_embedder(weights, device="cpu")
    crops = np.stack([ref.align(img, face) for img, face in faces])
    half = load_embedder(weights, device="cuda", precision=precision)
    assert next(half.model.parameters()).dtype == half.dtype
    cos = np.sum(ref.embed_crops(crops) * half.embed_crops(crops), axis=1)
    assert cos.min() > least


def test_onnx_models_have_no_invented_threshold(tmp_path, face_jpg):
    from typer.testing import CliRunner
    from faceforge.cli.main import app
    path = tmp_path / "rec.onnx"
    _export(DlibResNet29().eval(), path)
    assert create_embedder(f"onnx:{path}").threshold is None
    res = CliRunner().invoke(app, ["verify", str(face_jpg), str(face_jpg), "--model", f"onnx:{path}", "--json"])
    assert res.exit_code == 2 and "pass --threshold" in res.stdout
    res = CliRunner().invoke(app, ["verify", str(face_jpg), str(face_jpg), "--model", f"onnx:{path}",
                                   "--threshold", "0.5", "--json"])
    assert res.exit_code == 0 and '"same_person": true' in res.stdout
