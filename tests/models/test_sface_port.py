"""The float PyTorch port of SFace against OpenCV running the same int8 file."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from faceforge.core.errors import ModelLoadError
from faceforge.io import load_image
from faceforge.models import create_embedder
from faceforge.models.sface import dequantize_blockwise, load_sface_float
from faceforge.vision.detectors import create_detector

from ..conftest import LFW, need


def test_blockwise_dequantisation_by_hand():
    # axis 1, blocks of 2: columns 0-1 use scale/zero point [:, 0], columns 2-3 use [:, 1]
    q = np.array([[0, 1, 2, 3], [10, 20, 30, 40]], np.int8)
    scale = np.array([[0.5, 2.0], [1.0, 0.1]], np.float32)
    zero = np.array([[1, 3], [0, 10]], np.int8)
    want = [[(0 - 1) * 0.5, (1 - 1) * 0.5, (2 - 3) * 2.0, (3 - 3) * 2.0],
            [10 * 1.0, 20 * 1.0, (30 - 10) * 0.1, (40 - 10) * 0.1]]
    np.testing.assert_allclose(dequantize_blockwise(q, scale, zero, axis=1, block_size=2), want, rtol=1e-6)


@pytest.fixture(scope="module")
def crops():
    """Aligned crops of 24 LFW photos of 12 people."""
    need(LFW / "images")
    people = sorted(p for p in (LFW / "images").iterdir() if p.is_dir() and len(list(p.iterdir())) >= 2)[:12]
    det, emb = create_detector("yunet"), create_embedder("sface-int8")
    out = []
    for p in people:
        for f in sorted(p.iterdir())[:2]:
            img = load_image(f)
            faces = det.detect(img)
            if faces:
                out.append(emb.align(img, max(faces, key=lambda x: x.area)))
    return np.stack(out)


def test_float_port_equals_opencv_on_real_faces(crops):
    port, ref = create_embedder("sface", device="cpu"), create_embedder("sface-int8")
    a, b = port.embed_raw(crops), ref.embed_raw(crops)  # raw, not normalised: the scale must match too
    assert len(crops) >= 20
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
    cos = np.sum(port.embed_crops(crops) * ref.embed_crops(crops), axis=1)
    assert cos.min() > 0.99999
    # one crop at a time, in the CPU chunks and in one odd batch: the same vectors
    one = np.concatenate([port.embed_raw(c[None]) for c in crops])
    np.testing.assert_allclose(one, a, rtol=0, atol=1e-4 * np.abs(b).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_float_port_on_cuda_equals_cpu(crops):
    cpu, gpu = create_embedder("sface", device="cpu"), create_embedder("sface", device="cuda")
    assert np.sum(cpu.embed_crops(crops) * gpu.embed_crops(crops), axis=1).min() > 0.9999


def _model(nodes, inits, tmp_path):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_a_branching_graph_or_unknown_operator_is_refused(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 1, 1], np.eye(2, dtype=np.float32).ravel())
    branch = _model([helper.make_node("Conv", ["data", "w"], ["c"]),
                     helper.make_node("Add", ["c", "data"], ["out"])], [w], tmp_path)
    with pytest.raises(ModelLoadError, match="does not continue the chain|not supported"):
        load_sface_float(branch)
    unknown = _model([helper.make_node("Conv", ["data", "w"], ["c"]), helper.make_node("Sigmoid", ["c"], ["out"])],
                     [w], tmp_path)
    with pytest.raises(ModelLoadError, match="Sigmoid"):
        load_sface_float(unknown)
    simple = _model([helper.make_node("Conv", ["data", "w"], ["c"]), helper.make_node("Flatten", ["c"], ["out"])],
                    [w], tmp_path)
    x = torch.rand(3, 2, 4, 4)
    assert torch.allclose(load_sface_float(simple)(x), x.flatten(1))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a readable ONNX"):
        load_sface_float(tmp_path / "bad.onnx")


def test_the_cached_network_is_the_built_one_and_needs_no_onnx(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from faceforge.core.resources import package_file
    from faceforge.models.embedders import SFACE_ONNX
    from faceforge.models.sface import sface_network
    monkeypatch.setenv("FACEFORGE_CACHE", str(tmp_path))
    onnx_file = package_file(*SFACE_ONNX)
    built = load_sface_float(onnx_file)
    first = sface_network(onnx_file)  # builds and writes the cache
    (cached,) = (tmp_path / "sface").glob("float-*.safetensors")
    x = torch.rand(3, 3, 112, 112) * 255
    with torch.inference_mode():
        want = built(x)
        assert torch.equal(first(x), want)
        # another process reads it back without importing onnx, to the same outputs
        code = ("import sys, torch; from faceforge.models.sface import sface_network; "
                f"m = sface_network({str(onnx_file)!r}); x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True); "
                f"torch.save(m(x), {str(tmp_path / 'y.pt')!r}); print('onnx' in sys.modules)")
        torch.save(x, tmp_path / "x.pt")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "FACEFORGE_CACHE": str(tmp_path)})
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "False"
        assert torch.equal(torch.load(tmp_path / "y.pt", weights_only=True), want)
        # a damaged cache is rebuilt and written again
        cached.write_bytes(cached.read_bytes()[:1000])
        assert torch.equal(sface_network(onnx_file)(x), want)
        assert cached.stat().st_size > 1000
