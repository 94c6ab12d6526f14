"""BatchNorm-statistics fine-tuning: only running statistics move, snapshots resume, the
mixing sources are deterministic, diagnostics recomputed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.io.fractals import MIN_FILL, FractalImages, fractal_image
from faceforge.io.images import load_image
from faceforge.models.backbones import create_backbone
from faceforge.models.dlib_r29 import DlibResNet29
from faceforge.train.bn_finetune import (BNFinetuneConfig, BNFinetuner, OutOfDomainImages, bn_activation_report,
                                         bn_buffers, bn_relative_change, load_bn_buffers, save_bn_buffers)
from faceforge.train.trainer import arcface_preprocess
from tests.conftest import DATA, LFW, need
from tests.ddp import run_gloo


def _lfw_chips(n: int, size: int) -> np.ndarray:
    """Real faces: the centre of LFW's deep-funneled images, resized."""
    import cv2
    files = sorted(need(LFW / "images").glob("A*/*.jpg"))[:n]
    return np.stack([cv2.resize(load_image(f)[50:200, 50:200], (size, size), interpolation=cv2.INTER_AREA)
                     for f in files])


def _split_state(model: nn.Module):
    bn = {f"{n}.{b}" for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
          for b in ("running_mean", "running_var", "num_batches_tracked")}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return {k: v for k, v in state.items() if k in bn}, {k: v for k, v in state.items() if k not in bn}


@pytest.mark.parametrize("name,size", [("dlib-r29", 150), ("r18", 112), ("mbf", 112)])
def test_only_batchnorm_buffers_change(name, size, tmp_path):
    torch.manual_seed(0)
    model = create_backbone(name) if name == "dlib-r29" else create_backbone(name, num_features=64)
    pre = DlibResNet29.preprocess if name == "dlib-r29" else arcface_preprocess
    images = _lfw_chips(12, size)
    bn0, rest0 = _split_state(model)
    cfg = BNFinetuneConfig(output=str(tmp_path / "run"), epochs=2, batch_size=4, noise=0.25, blur=0.3, ood=0.25,
                           device="cpu")
    res = BNFinetuner(model, images, cfg, pre, ood=FractalImages(size, seed=1)).fit()
    bn1, rest1 = _split_state(model)
    for k in rest0:  # conv/linear weights, BN affine, PReLU, every other buffer
        assert torch.equal(rest0[k], rest1[k]), k
    assert all(not p.requires_grad for p in model.parameters())
    moved = [k for k in bn0 if "running" in k and not torch.equal(bn0[k], bn1[k])]
    assert len(moved) == sum(1 for k in bn0 if "running" in k)  # every statistic moved
    assert [r["snapshot"] for r in res["history"]] == ["baseline", "epoch-001", "epoch-002"]
    snap = tmp_path / "run" / "snapshots" / "epoch-002.safetensors"
    assert snap.stat().st_size < 0.2 * sum(v.numel() * v.element_size() for v in rest0.values())


def test_momentum_and_noise_batches_by_hand(tmp_path):
    """One step on a one-BN network: the new running mean is (1−m)·old + m·batch mean over the
    images and the ⌊noise·B⌋ appended N(0,1) images."""
    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.BatchNorm2d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[[[1.0]], [[0.0]], [[0.0]]], [[[0.0]], [[0.0]], [[1.0]]]]))
    images = np.random.default_rng(0).integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    pre = arcface_preprocess
    cfg = BNFinetuneConfig(output=str(tmp_path), epochs=1, batch_size=8, noise=0.25, momentum=0.3, device="cpu")
    tuner = BNFinetuner(net, images, cfg, pre)
    x = tuner._batch(0, np.arange(8), np.arange(8))
    assert x.shape == (10, 3, 6, 6)  # 8 images + 2 noise images
    old = net[1].running_mean.clone()
    with torch.no_grad():
        net(x)
    batch_mean = torch.stack([x[:, 0].mean(), x[:, 2].mean()])
    assert torch.allclose(net[1].running_mean, 0.7 * old + 0.3 * batch_mean, atol=1e-6)


def test_cumulative_average_when_momentum_is_none(tmp_path):
    """momentum None: after k steps each running mean is the plain mean of the k batch means,
    whatever the pretrained batch count was."""
    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.BatchNorm2d(2))
    net[1].num_batches_tracked.fill_(10_000)
    images = np.random.default_rng(1).integers(0, 256, (12, 5, 5, 3), dtype=np.uint8)
    cfg = BNFinetuneConfig(output=str(tmp_path), epochs=1, batch_size=4, momentum=None, device="cpu")
    tuner = BNFinetuner(net, images, cfg, arcface_preprocess)
    order = np.random.default_rng([0, 0]).permutation(12)
    batch_means = []
    with torch.no_grad():
        for b in range(3):
            x = tuner._batch(0, np.arange(4 * b, 4 * b + 4), order)
            batch_means.append(net[0](x).mean(dim=(0, 2, 3)))
    tuner.fit()
    assert torch.allclose(net[1].running_mean, torch.stack(batch_means).mean(0), atol=1e-6)


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    images = _lfw_chips(24, 150)
    pre = DlibResNet29.preprocess
    cfg = dict(epochs=2, batch_size=4, noise=0.25, blur=0.2, snapshot_every=2, device="cpu")
    full = create_backbone("dlib-r29")
    BNFinetuner(full, images, BNFinetuneConfig(output=str(tmp_path / "a"), **cfg), pre).fit()
    part = create_backbone("dlib-r29")
    out = BNFinetuner(part, images, BNFinetuneConfig(output=str(tmp_path / "b"), **cfg), pre).fit(stop_after_steps=9)
    assert out["stopped_at"] == 9  # killed after step 9: the last snapshot is step 8
    again = create_backbone("dlib-r29")
    res = BNFinetuner(again, images, BNFinetuneConfig(output=str(tmp_path / "b"), **cfg), pre).fit()
    for k, v in bn_buffers(full).items():
        assert torch.equal(v, bn_buffers(again)[k]), k
    assert [r["snapshot"] for r in res["history"]][:3] == ["baseline", "step-000002", "step-000004"]
    with pytest.raises(FaceForgeError, match="another configuration"):
        BNFinetuner(create_backbone("dlib-r29"), images,
                    BNFinetuneConfig(output=str(tmp_path / "b"), **{**cfg, "noise": 0.5}), pre).fit()


def test_best_snapshot_is_kept_and_loaded(tmp_path):
    images = _lfw_chips(16, 150)
    model = create_backbone("dlib-r29")
    calls = []

    def evaluate(m):  # a metric that peaks at the second snapshot
        calls.append(bn_buffers(m))
        return {"score": [0.1, 0.9, 0.5, 0.2][len(calls) - 1]}

    cfg = BNFinetuneConfig(output=str(tmp_path), epochs=3, batch_size=4, device="cpu")
    res = BNFinetuner(model, images, cfg, DlibResNet29.preprocess, evaluate=evaluate, metric="score").fit()
    assert res["best"]["snapshot"] == "epoch-001" and res["best"]["score"] == 0.9
    for k, v in calls[1].items():  # the model ends with the best statistics
        assert torch.equal(bn_buffers(model)[k], v)


def test_snapshot_refuses_another_model(tmp_path):
    save_bn_buffers(create_backbone("r18", num_features=64), tmp_path / "r18.safetensors")
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_bn_buffers(create_backbone("dlib-r29"), tmp_path / "r18.safetensors")


def test_config_errors(tmp_path):
    with pytest.raises(FaceForgeError, match="unknown bn options"):
        BNFinetuneConfig.from_dict({"nosie": 0.05})
    with pytest.raises(FaceForgeError, match="fraction"):
        BNFinetuneConfig.from_dict({"noise": 1.5})
    with pytest.raises(FaceForgeError, match="out-of-domain"):
        BNFinetuner(create_backbone("dlib-r29"), _lfw_chips(8, 150), BNFinetuneConfig(output=str(tmp_path), ood=0.1,
                    batch_size=4), DlibResNet29.preprocess)
    with pytest.raises(FaceForgeError, match="no BatchNorm"):
        BNFinetuner(nn.Linear(3, 3), np.zeros((8, 4, 4, 3), np.uint8), BNFinetuneConfig(batch_size=4), arcface_preprocess)


def test_fractals_are_deterministic_and_fill_the_frame():
    a, b = fractal_image(3, 64, seed=1), fractal_image(3, 64, seed=1)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, fractal_image(4, 64, seed=1))
    assert not np.array_equal(a, fractal_image(3, 64, seed=2))
    for i in range(8):
        img = fractal_image(i, 96)
        background = np.median(img.reshape(-1, 3), axis=0)
        assert (np.abs(img.astype(int) - background).sum(axis=2) > 30).mean() > MIN_FILL / 2
    src = FractalImages(32, count=5)
    assert len(src) == 5 and np.array_equal(src[2], fractal_image(2, 32))
    with pytest.raises(IndexError):
        src[5]


def test_out_of_domain_folder_images():
    src = OutOfDomainImages(need(DATA / "nonface_imagenet"), 150)
    assert len(src) == 1000 and src[0].shape == (150, 150, 3) and src[0].dtype == np.uint8


def test_relative_change_by_hand():
    a, b = nn.Sequential(nn.BatchNorm2d(3), nn.BatchNorm1d(2)), nn.Sequential(nn.BatchNorm2d(3), nn.BatchNorm1d(2))
    with torch.no_grad():
        a[0].running_mean.copy_(torch.tensor([1.0, 2.0, 2.0]))
        b[0].running_mean.copy_(torch.tensor([1.0, 2.0, 5.0]))
        b[1].running_var.copy_(torch.tensor([2.0, 1.0]))
    c = bn_relative_change(a, b)
    assert c["mean"][0] == pytest.approx(3 / 3) and c["var"][0] == 0
    assert c["mean"][1] == 0 and c["var"][1] == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(FaceForgeError, match="different BatchNorm"):
        bn_relative_change(a, nn.Sequential(nn.BatchNorm2d(4), nn.BatchNorm1d(2)))


def test_activation_nll_by_hand():
    bn = nn.BatchNorm2d(2)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    x = torch.randn(3, 2, 5, 5)
    r = bn_activation_report(nn.Sequential(bn), x)
    v = torch.tensor([4.0, 0.25]).view(1, 2, 1, 1) + bn.eps
    m = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    expect = (0.5 * torch.log(2 * math.pi * v) + (x - m) ** 2 / (2 * v)).mean()
    assert r["nll"][0] == pytest.approx(float(expect), rel=1e-5)
    assert sorted(r["normalised"]["0"]) == pytest.approx(sorted(((x - m) / v.sqrt()).flatten().numpy()), rel=1e-5)


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))


def _bn_ddp_worker(rank, world, out_dir):
    net = _small_net()
    if rank == 1:  # a rank that starts from other statistics is overwritten by rank 0's
        with torch.no_grad():
            net[1].running_mean += 5.0
    images = np.random.default_rng(0).integers(0, 256, (32, 12, 12, 3), dtype=np.uint8)
    cfg = BNFinetuneConfig(output=out_dir, epochs=1, batch_size=4, noise=0.25, device="cpu")
    tuner = BNFinetuner(net, images, cfg, arcface_preprocess)
    res = tuner.fit()
    return bn_buffers(net), tuner.steps_per_epoch, len(res["history"])


def test_two_process_ddp_broadcasts_then_averages(tmp_path):
    out = run_gloo(_bn_ddp_worker, str(tmp_path))
    (b0, spe, n0), (b1, _, n1) = out[0], out[1]
    assert spe == 4  # 32 images / 2 ranks / batch 4
    assert all(torch.equal(b0[k], b1[k]) for k in b0)  # statistics averaged across ranks
    assert n0 == 2 and n1 == 0                         # rank 0 alone snapshots and records
    start = _small_net()
    baseline = tmp_path / "snapshots" / "baseline.safetensors"
    load_bn_buffers(start, baseline)                    # the baseline is rank 0's, not a blend
    assert all(torch.equal(v, bn_buffers(_small_net())[k]) for k, v in bn_buffers(start).items())
    assert not torch.equal(b0["1.running_mean"], bn_buffers(_small_net())["1.running_mean"])


def test_precise_statistics_are_the_plain_average_over_the_batches_by_hand():
    from faceforge.train.bn_finetune import recompute_bn_statistics
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1, bias=False), torch.nn.BatchNorm2d(1))
    model[0].weight.data.fill_(2.0)  # the BatchNorm sees 2·x
    model[1].running_mean.fill_(5.0)  # statistics from "an earlier run": to be replaced
    model[1].num_batches_tracked.fill_(1000)
    a = torch.tensor([1.0, 3.0]).reshape(2, 1, 1, 1)   # 2·x: mean 4, unbiased var 8
    b = torch.tensor([0.0, 2.0, 4.0]).reshape(3, 1, 1, 1)  # 2·x: mean 4, unbiased var 16
    recompute_bn_statistics(model, [a, b])
    assert not model.training and model[0].weight.requires_grad
    assert model[1].running_mean.item() == pytest.approx(4.0)
    assert model[1].running_var.item() == pytest.approx((8 + 16) / 2)
    assert model[0].weight.item() == 2.0
