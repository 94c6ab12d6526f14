"""dlib-r29: our parser + PyTorch network against dlib's own implementation."""
from pathlib import Path

import numpy as np
import pytest
import torch

from faceforge.core.errors import ModelLoadError
from faceforge.io import load_image
from faceforge.models.dlib_dat import read_dlib_net
from faceforge.models.dlib_r29 import (INPUT_MEAN_RGB, bn_affine, load_dlib_resnet, measure_bn_input_stats,
                                       unfold_batchnorm)
from faceforge.core.resources import package_file
from faceforge.models.embedders import DlibR29Embedder
from faceforge.vision.detectors import create_detector

from ..conftest import lfw_image

DAT = Path(package_file("face_recognition_models", "models", "dlib_face_recognition_resnet_model_v1.dat"))
PEOPLE = ["Aaron_Eckhart", "Abdullah_Gul", "Alvaro_Uribe", "Angelina_Jolie", "Bill_Gates", "Colin_Powell"]


def _norm(chips: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    return (x - torch.tensor(INPUT_MEAN_RGB).view(1, 3, 1, 1)) / 256.0


@pytest.fixture(scope="module")
def dlib_chips() -> np.ndarray:
    """Real LFW faces cut by dlib itself (HOG + 5-point + get_face_chip)."""
    dlib = pytest.importorskip("dlib")
    det = create_detector("dlib")
    chips = []
    for name in PEOPLE:
        img = load_image(lfw_image(name, 1))
        f = det.detect(img)[0]
        x1, y1, x2, y2 = (int(v) for v in f.box)
        shape = det._sp(img, dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
        chips.append(dlib.get_face_chip(img, shape, 150, 0.25))
    return np.stack(chips)


def test_parser_reads_the_whole_network():
    net = read_dlib_net(DAT)
    kinds = [l.kind for l in net.layers]
    assert net.loss == "loss_metric_2" and net.input_size == (150, 150)
    assert np.allclose(net.input_mean, INPUT_MEAN_RGB, atol=1e-3)
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("fc") == 1
    assert kinds.count("add_prev") == 14 and kinds.count("avg_pool") == 5  # 4 down blocks + global


def test_parity_with_dlib_on_real_faces(dlib_chips):
    dlib = pytest.importorskip("dlib")
    rec = dlib.face_recognition_model_v1(str(DAT))
    ref = np.stack([np.array(rec.compute_face_descriptor(c)) for c in dlib_chips])
    model = load_dlib_resnet(DAT)
    with torch.no_grad():
        ours = model(_norm(dlib_chips)).numpy()
    assert np.abs(ours - ref).max() <= 1e-3
    # and the descriptors mean something: different people lie beyond dlib's 0.6
    assert np.linalg.norm(ours[0] - ours[1]) > 0.6


def test_unfolded_batchnorm_equals_folded(dlib_chips):
    folded = load_dlib_resnet(DAT)
    emb = DlibR29Embedder(device="cpu")  # unfolded with the shipped CelebA statistics
    bns = emb.model.batchnorms()
    assert len(bns) == 29
    # real statistics: not the identity (mean 0, var 1) of the folded form
    assert all(bn.running_mean.abs().max() > 1e-3 and (bn.running_var - 1).abs().max() > 1e-3 for bn in bns)
    for a, b in zip(folded.batchnorms(), bns):
        ga, ba = bn_affine(a)
        gb, bb = bn_affine(b)
        assert torch.allclose(ga, gb, rtol=1e-5, atol=1e-6) and torch.allclose(ba, bb, rtol=1e-4, atol=1e-5)
    x = _norm(dlib_chips)
    with torch.no_grad():
        assert torch.allclose(folded(x), emb.model(x), atol=1e-5)


def test_measured_statistics_are_the_inputs_moments():
    torch.manual_seed(0)
    model = load_dlib_resnet(DAT)
    x = torch.randn(4, 3, 150, 150)
    seen = {}
    model.bn1.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0].detach()))
    stats = measure_bn_input_stats(model, [x[:2], x[2:]])
    inp = seen["x"]  # first batch only was captured; recompute on both halves by hand
    with torch.no_grad():
        full = torch.cat([model.conv1(x[:2]), model.conv1(x[2:])])
    assert torch.allclose(stats[0][0], full.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(stats[0][1], full.var((0, 2, 3), unbiased=False), rtol=1e-3)
    assert inp.shape[1] == 32
    out_before = model(x)
    unfold_batchnorm(model, stats)
    assert torch.allclose(model(x), out_before, atol=1e-5)
    with pytest.raises(ModelLoadError):
        unfold_batchnorm(model, stats[:3])


@pytest.mark.parametrize("cut", [0.0005, 0.5, 0.999])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    data = DAT.read_bytes()
    bad = tmp_path / "truncated.dat"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ModelLoadError, match="truncated.dat"):
        load_dlib_resnet(bad)


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "garbage.dat"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="garbage.dat"):
        read_dlib_net(bad)
