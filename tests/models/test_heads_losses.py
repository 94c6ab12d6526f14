"""Every head and loss recomputed by hand (numpy / plain loops) and compared."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceforge.models.heads import AdaCos, ArcFace, CombinedMargin, CosFace, FCHead, PartialFC, SoftmaxHead
from faceforge.models.losses import BatchHardTriplet, WeightedSum

from ..ddp import run_gloo


def cos_and_labels(n=9, c=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(n, c, generator=g) * 2 - 1
    cos[0, 3] = -0.995  # a target angle near π: the fallback branch
    labels = torch.randint(0, c, (n,), generator=g)
    labels[0] = 3
    return cos, labels


def manual_margin(cos, labels, s, m1, m2, m3):
    out = cos.numpy().astype(np.float64).copy()
    for i, y in enumerate(labels.tolist()):
        c = out[i, y]
        th = math.acos(max(-1 + 1e-7, min(1 - 1e-7, c)))
        a = m1 * th + m2
        if a <= math.pi:
            t = math.cos(a) if (m1 != 1 or m2 != 0) else c
        elif m1 == 1:
            t = c - math.sin(math.pi - m2) * m2
        else:  # piece k = ⌊a/π⌋ of the monotone extension
            k = math.floor(a / math.pi)
            t = (-1) ** k * math.cos(a) - 2 * k
        out[i, y] = t - m3
    return out * s


@pytest.mark.parametrize("m1,m2,m3", [(1, 0.5, 0), (1, 0, 0.35), (1, 0.3, 0.2), (2, 0.0, 0), (1.35, 0.2, 0.1), (4, 0.0, 0)])
def test_combined_margin_by_hand(m1, m2, m3):
    cos, labels = cos_and_labels()
    got = CombinedMargin(64, m1, m2, m3)(cos, labels)
    assert np.allclose(got.numpy(), manual_margin(cos, labels, 64, m1, m2, m3), atol=1e-4)


def _target(margin, theta):
    """margin's target logit for rows whose one column is at angle theta (float64)."""
    cos = torch.cos(torch.as_tensor(theta, dtype=torch.float64)).reshape(-1, 1)
    return margin(cos, torch.zeros(len(cos), dtype=torch.long))[:, 0]


def test_multiplicative_margin_by_hand():
    # m1=2, θ=2π/3: a = 4π/3 lies in piece k=1, ψ = −cos(4π/3) − 2 = −1.5
    assert _target(CombinedMargin(10, 2, 0, 0), [2 * math.pi / 3]).item() == pytest.approx(-15.0, abs=1e-6)
    # m1=4, m2=0.1, m3=0.2, θ=0.6π: a = 2.4π + 0.1 lies in piece k=2, ψ = cos(0.4π + 0.1) − 4
    expect = 10 * (math.cos(0.4 * math.pi + 0.1) - 4 - 0.2)
    assert _target(CombinedMargin(10, 4, 0.1, 0.2), [0.6 * math.pi]).item() == pytest.approx(expect, abs=1e-6)
    # m1=2, m2=0.3, m3=0.2, θ=0.9π: a = 1.8π + 0.3 in piece k=1, ψ = −cos(0.3 − 0.2π) − 2
    expect = 10 * (-math.cos(0.3 - 0.2 * math.pi) - 2 - 0.2)
    assert _target(CombinedMargin(10, 2, 0.3, 0.2), [0.9 * math.pi]).item() == pytest.approx(expect, abs=1e-6)


@pytest.mark.parametrize("m2", [0.0, 0.3])
@pytest.mark.parametrize("m1", [1.35, 2, 4])
def test_multiplicative_margin_is_continuous_and_decreasing(m1, m2):
    # the ends are left out: there cos is clamped to ±(1 − 1e-7) and the target is flat
    theta = torch.linspace(1e-3, math.pi - 1e-3, 20001, dtype=torch.float64)
    diff = torch.diff(_target(CombinedMargin(1, m1, m2, 0), theta))
    step = (theta[1] - theta[0]).item()
    assert (diff < 0).all()
    assert diff.abs().max().item() <= m1 * step * 1.001  # |dψ/dθ| ≤ m1: no jump anywhere


@pytest.mark.parametrize("m2,m3", [(0.5, 0.0), (0.0, 0.35), (0.3, 0.2)])
def test_m1_one_keeps_the_insightface_fallback(m2, m3):
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    got = _target(CombinedMargin(64, 1, m2, m3), theta)
    th = torch.acos(torch.cos(theta).clamp(-1 + 1e-7, 1 - 1e-7))
    t = torch.cos(theta)
    old = t if m2 == 0 else torch.where(th + m2 <= math.pi, torch.cos(th + m2), t - math.sin(math.pi - m2) * m2)
    assert torch.allclose(got, 64 * (old - m3), rtol=0, atol=1e-9)


def test_combined_margin_refuses_non_positive_m1():
    for m1 in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="m1 > 0"):
            CombinedMargin(64, m1, 0.5, 0)


def test_arcface_fallback_and_factories():
    cos, labels = cos_and_labels()
    a = ArcFace(s=30, m=0.5)(cos, labels)
    # θ ≈ π − 0.1: θ + 0.5 > π, so the target is cos θ − sin(π − 0.5)·0.5
    assert a[0, 3].item() == pytest.approx(30 * (-0.995 - math.sin(math.pi - 0.5) * 0.5), abs=1e-4)
    c = CosFace(s=30, m=0.4)(cos, labels)
    assert torch.allclose(c[1], 30 * (cos[1] - 0.4 * F.one_hot(labels[1], 7)), atol=1e-5)
    # rows marked -1 (class not among the columns) get no margin
    none = ArcFace()(cos, torch.full_like(labels, -1))
    assert torch.allclose(none, 64 * cos)


def test_adacos_fixed_and_dynamic_by_hand():
    n, c = 9, 7
    cos, labels = cos_and_labels(n, c)
    s0 = math.sqrt(2) * math.log(c - 1)
    fixed = AdaCos(c, dynamic=False).train()
    assert torch.allclose(fixed(cos, labels), s0 * cos) and fixed.s.item() == pytest.approx(s0)
    dyn = AdaCos(c, dynamic=True).train()
    logits = dyn(cos, labels)
    assert torch.allclose(logits, s0 * cos)  # this batch used the previous scale
    cc = cos.numpy().astype(np.float64)
    b_avg = sum(math.exp(s0 * cc[i, j]) for i in range(n) for j in range(c) if j != labels[i]) / n
    theta_med = float(np.median([math.acos(cc[i, labels[i]]) for i in range(n)]))  # n is odd
    expect = math.log(b_avg) / math.cos(min(math.pi / 4, theta_med))
    assert dyn.s.item() == pytest.approx(expect, rel=1e-5)
    dyn.eval()
    before = dyn.s.item()
    dyn(cos, labels)
    assert dyn.s.item() == before  # no update outside training
    dyn.train()
    dyn(cos, torch.full_like(labels, -1))  # no target in the batch: nothing to adapt to
    assert dyn.s.item() == before


def test_fc_head_and_softmax_losses_by_hand():
    torch.manual_seed(0)
    emb, labels = torch.randn(6, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    head = FCHead(16, 5, ArcFace(s=32, m=0.5))
    cos = (F.normalize(emb) @ F.normalize(head.weight).T).detach()
    logits = torch.from_numpy(manual_margin(cos, labels, 32, 1, 0.5, 0))
    expect = -(logits.log_softmax(1)[range(6), labels]).mean()
    assert head(emb, labels).item() == pytest.approx(expect.item(), rel=1e-4)
    sm = SoftmaxHead(16, 5)
    z = emb @ sm.fc.weight.T + sm.fc.bias
    assert sm(emb, labels).item() == pytest.approx(-(z.log_softmax(1)[range(6), labels]).mean().item(), rel=1e-5)


def test_partial_fc_full_rate_equals_fc_head_and_sampling_keeps_batch_classes():
    torch.manual_seed(0)
    emb, labels = torch.randn(8, 16), torch.tensor([3, 7, 7, 11, 0, 19, 3, 5])
    pfc = PartialFC(16, 20, ArcFace(), sample_rate=1.0)
    head = FCHead(16, 20, ArcFace())
    head.weight.data.copy_(pfc.weight.data)
    assert pfc(emb, labels).item() == pytest.approx(head(emb, labels).item(), rel=1e-5)
    sampled = PartialFC(16, 20, ArcFace(), sample_rate=0.4, generator=torch.Generator().manual_seed(1))
    sampled.weight.data.copy_(pfc.weight.data)
    index, mapped = sampled._sample(labels)
    assert len(index) == 8 and set(labels.tolist()) <= set(index.tolist())
    assert torch.equal(index[mapped], labels)
    sub = FCHead(16, 8, ArcFace())
    sub.weight.data.copy_(pfc.weight.data[index])
    assert sampled.weight.shape == (20, 16)
    # the loss is the margin softmax over the sampled centres only
    sampled.generator = torch.Generator().manual_seed(1)
    assert sampled(emb, labels).item() == pytest.approx(sub(emb, mapped).item(), rel=1e-5)


def _ddp_worker(rank, world, emb, labels, weight):
    pfc = PartialFC(16, 10, ArcFace(s=16), sample_rate=1.0)
    pfc.weight.data.copy_(weight[pfc.start:pfc.start + pfc.local])
    n = len(labels) // world
    e = emb[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    loss = pfc(e, labels[rank * n:(rank + 1) * n])
    loss.backward()
    return loss.item(), pfc.start, pfc.weight.grad.clone(), e.grad.clone()


def test_partial_fc_sharded_over_two_processes_equals_single_process():
    torch.manual_seed(0)
    emb, labels = torch.randn(8, 16), torch.tensor([0, 9, 4, 5, 5, 1, 8, 2])
    weight = torch.normal(0, 0.01, (10, 16))
    out = run_gloo(_ddp_worker, emb, labels, weight)
    ref_head = FCHead(16, 10, ArcFace(s=16))
    ref_head.weight.data.copy_(weight)
    e = emb.clone().requires_grad_(True)
    ref = ref_head(e, labels)
    ref.backward()
    for rank in range(2):
        loss, start, wgrad, egrad = out[rank]
        assert loss == pytest.approx(ref.item(), rel=1e-5)
        assert torch.allclose(wgrad, ref_head.weight.grad[start:start + len(wgrad)], atol=1e-6)
        # ×2: compensates DDP's averaging of backbone gradients over the two ranks
        assert torch.allclose(egrad, 2 * e.grad[rank * 4:(rank + 1) * 4], atol=1e-6)


def test_batch_hard_triplet_by_hand():
    torch.manual_seed(0)
    emb = torch.randn(12, 8)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4])  # identity 4 has no positive
    e = F.normalize(emb).numpy().astype(np.float64)
    losses = []
    for i in range(12):
        pos = [np.linalg.norm(e[i] - e[j]) for j in range(12) if j != i and labels[j] == labels[i]]
        neg = [np.linalg.norm(e[i] - e[j]) for j in range(12) if labels[j] != labels[i]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + 0.2))
    assert BatchHardTriplet(0.2)(emb, labels).item() == pytest.approx(np.mean(losses), rel=1e-5)
    # identical embeddings of different people are the hardest negatives: loss = margin
    same = torch.ones(4, 8)
    assert BatchHardTriplet(0.2)(same, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(0.2, abs=1e-5)
    assert BatchHardTriplet()(emb[:3], labels[:3]).item() == 0.0  # no negatives: no triplet


def test_weighted_sum():
    torch.manual_seed(0)
    emb, labels = torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    arc, tri = FCHead(16, 4, ArcFace()), BatchHardTriplet()
    total = WeightedSum({"arcface": (arc, 1.0), "triplet": (tri, 5.0)})(emb, labels)
    assert total.item() == pytest.approx(arc(emb, labels).item() + 5 * tri(emb, labels).item(), rel=1e-5)
