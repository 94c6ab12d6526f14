"""What a head asks of the Trainer (P×K batches, sharded parameters, one gathered
checkpoint) and exact resumption with every random generator a step draws from."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceforge.core.errors import FaceForgeError
from faceforge.io.datasets import ImageFolderDataset
from faceforge.models.backbones import create_backbone
from faceforge.models.heads import CombinedMargin, FCHead, PartialFC
from faceforge.models.losses import BatchHardTriplet
from faceforge.train.config import build_trainer
from faceforge.train.trainer import TrainConfig, Trainer, arcface_preprocess

from ..ddp import run_gloo
from .conftest import config, kill_9_then_resume, same_weights


def _batches(trainer: Trainer, epoch: int = 0) -> np.ndarray:
    """The labels of each batch of `epoch`, one row per batch."""
    order = trainer._epoch_order(epoch)[:trainer.steps_per_epoch * trainer.cfg.batch_size]
    return np.asarray(trainer.dataset.targets)[order].reshape(trainer.steps_per_epoch, -1)


@pytest.mark.parametrize("head,train", [({"type": "triplet"}, {}),
                                        ({"type": "arcface", "triplet_weight": 5.0}, {}),
                                        ({"type": "arcface"}, {"sampler": "pk"})])
def test_losses_that_need_positives_get_p_identities_by_k_images(aligned, tmp_path, head, train):
    cfg = config(aligned, tmp_path, pk_k=4, **train)
    cfg["head"] = head
    t = build_trainer(cfg)
    assert t.use_pk and t.steps_per_epoch == 4  # 8 identities × 4 images: 8 chunks, 2 per batch
    for labels in _batches(t):
        ids, counts = np.unique(labels, return_counts=True)
        assert len(ids) == 2 and list(counts) == [4, 4]
    images, labels, _ = next(iter(t._loader(0, 0)))
    assert len(np.unique(labels.numpy())) == 2  # the loader serves exactly those batches


def test_plain_heads_keep_uniform_batches_and_bad_sampler_settings_are_refused(aligned, tmp_path):
    t = build_trainer(config(aligned, tmp_path))
    assert not t.use_pk and t.steps_per_epoch == 4
    assert np.array_equal(np.sort(t._epoch_order(0)), np.arange(32))
    cfg = config(aligned, tmp_path, sampler="uniform")
    cfg["head"] = {"type": "triplet"}
    with pytest.raises(FaceForgeError, match="needs P×K batches"):
        build_trainer(cfg)
    with pytest.raises(FaceForgeError, match="divisible by pk_k"):
        build_trainer(config(aligned, tmp_path, sampler="pk", pk_k=3))
    with pytest.raises(FaceForgeError, match="unknown sampler"):
        build_trainer(config(aligned, tmp_path, sampler="random"))


def _noisy(aligned_many: Path, out: Path) -> dict:
    """Partial FC sampling 30 % of 20 centres (batches hold at most 4) and dropout 0.2: both
    draw from the global generator every step."""
    cfg = config(aligned_many, out, batch_size=4)
    cfg["model"] = {"backbone": "r18", "num_features": 64, "dropout": 0.2}
    cfg["head"] = {"type": "arcface", "s": 32, "m": 0.3, "partial_fc": 0.3}
    return cfg


def test_kill_9_with_partial_fc_and_dropout_resumes_to_identical_weights(aligned_many, tmp_path):
    kill_9_then_resume(_noisy(aligned_many, tmp_path / "ref"), _noisy(aligned_many, tmp_path / "run"), tmp_path, 20)



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_with_amp_continues_the_same_run(aligned_many, tmp_path):
    """On a GPU (AMP and its loss scaler, CUDA's generator behind dropout and Partial FC's
    sampling): a run stopped mid-epoch and resumed ends where the uninterrupted one does, up
    to cuDNN's non-deterministic convolution sums."""
    def cfg(out):
        c = _noisy(aligned_many, out)
        c["train"].update(device="cuda", channels_last=True)
        return c
    full = build_trainer(cfg(tmp_path / "full"))
    assert full.use_amp
    full.fit()
    part = build_trainer(cfg(tmp_path / "part"))
    part.fit(stop_after_steps=7)
    resumed = build_trainer(cfg(tmp_path / "part"))
    assert resumed.resume() and resumed.step == 7
    resumed.fit()
    a, b = full.backbone.state_dict(), resumed.backbone.state_dict()
    flat = [torch.cat([d[k].float().flatten() for k in a if a[k].is_floating_point()]) for d in (a, b)]
    start = torch.cat([v.float().flatten() for k, v in build_trainer(cfg(tmp_path / "x")).backbone.state_dict()
                       .items() if v.is_floating_point()]).to(flat[0].device)
    drift = (flat[1] - flat[0]).norm() / (flat[0] - start).norm()  # against how far training moved them
    assert drift < 1e-2, float(drift)

# ---- DDP: two gloo processes ------------------------------------------------------------
LR, WD, CLIP, W_TRIPLET = 0.05, 5e-4, 0.5, 1.0


def _pfc_triplet_step(rank, world, cfg, images, labels):
    t = build_trainer(cfg)
    before = ({k: v.clone() for k, v in t.backbone.state_dict().items()}, t.head.full_state_dict())
    t.backbone.eval()  # BatchNorm from running statistics: the same for any split of the batch
    n = len(labels) // world
    t.train_step(images[rank * n:(rank + 1) * n], labels[rank * n:(rank + 1) * n], accumulate=False)
    return before, (t.backbone.state_dict(), t.head.full_state_dict())


def test_partial_fc_plus_triplet_under_ddp_equals_one_process_by_hand(aligned, tmp_path):
    """Sharded Partial FC inside the weighted sum: the shards' gradients must stay their own
    (not averaged, as DDP around the sum did) and the head is clipped by its whole norm."""
    cfg = config(aligned, tmp_path / "ddp", epochs=1, checkpoint_every=0, scheduler="constant", lr=LR,
                 weight_decay=WD, grad_clip=CLIP)
    cfg["head"] = {"type": "arcface", "s": 32, "m": 0.3, "partial_fc": 1.0, "triplet_weight": W_TRIPLET}
    ds = ImageFolderDataset(aligned)
    pick = np.arange(16)  # identities 0-3: rank 0 gets 0 and 1, rank 1 gets 2 and 3
    images = np.stack([ds[i][0] for i in pick])
    labels = torch.tensor([int(ds[i][1]) for i in pick])
    out = run_gloo(_pfc_triplet_step, cfg, images, labels)
    (bb0, head0), (bb1, head1) = out[0][0], out[0][1]
    assert same_weights(out[1][1][0], bb1)  # the backbones agree across ranks

    # the same step by hand in one process: global Partial FC (= full FC at rate 1) + the
    # mean of the two ranks' triplet losses, SGD with weight decay, each part clipped
    backbone = create_backbone("mbf", num_features=64)
    backbone.load_state_dict(bb0)
    backbone.eval()
    weight = torch.nn.Parameter(head0["parts.arcface.weight"].clone())
    assert weight.shape == (8, 64)
    emb = backbone(arcface_preprocess(images))
    arc = FCHead(64, 8, CombinedMargin(32, 1.0, 0.3, 0.0))
    arc.weight = weight
    tri = BatchHardTriplet(0.2)
    loss = F.cross_entropy(arc.logits(emb, labels), labels) + \
        W_TRIPLET * (tri(emb[:8], labels[:8]) + tri(emb[8:], labels[8:])) / 2
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(backbone.parameters()), CLIP)
    torch.nn.utils.clip_grad_norm_([weight], CLIP)
    with torch.no_grad():
        for p in list(backbone.parameters()) + [weight]:
            p -= LR * (p.grad + WD * p)
    got = dict(bb1)
    for name, p in backbone.named_parameters():
        assert torch.allclose(got[name], p, atol=2e-6), name
    assert torch.allclose(head1["parts.arcface.weight"], weight, atol=2e-6)


class _EpochMetric:
    """Reports an increasing metric, so that every epoch writes best.pt."""

    def on_epoch_end(self, trainer, epoch):
        return {"m": float(epoch)}


def _pfc_resume(rank, world, cfg_full, cfg_part):
    full = build_trainer(cfg_full, callbacks=[_EpochMetric()])
    full.fit()
    part = build_trainer(cfg_part, callbacks=[_EpochMetric()])
    part.fit(stop_after_steps=3)
    resumed = build_trainer(cfg_part, callbacks=[_EpochMetric()])
    assert resumed.resume() and resumed.step == 3
    resumed.fit()
    return (full.backbone.state_dict(), full.head.state_dict(), resumed.backbone.state_dict(),
            resumed.head.state_dict())


def test_partial_fc_under_ddp_resumes_exactly_and_best_holds_every_shard(aligned_many, tmp_path):
    def cfg(name):
        c = config(aligned_many, tmp_path / name, batch_size=4, checkpoint_every=1, best_metric="m")
        c["head"] = {"type": "cosface", "s": 32, "m": 0.3, "partial_fc": 0.5}  # samples: 5 of 10 per rank
        return c
    out = run_gloo(_pfc_resume, cfg("full"), cfg("part"))
    for rank in (0, 1):
        full_bb, full_head, res_bb, res_head = out[rank]
        assert same_weights(full_bb, res_bb) and same_weights(full_head, res_head)
        assert full_head["weight"].shape == (10, 64)  # this rank's shard
    best = torch.load(tmp_path / "full" / "best.pt", weights_only=True)
    assert torch.equal(best["head"]["weight"], torch.cat([out[0][1]["weight"], out[1][1]["weight"]]))


def _adacos(rank, world, cfg):
    t = build_trainer(cfg)
    t.fit()
    return float(t.head.margin.s)


def test_adacos_on_sharded_partial_fc_adapts_one_scale(aligned_many, tmp_path):
    cfg = config(aligned_many, tmp_path / "ada", batch_size=4, epochs=1, checkpoint_every=0)
    cfg["head"] = {"type": "adacos", "partial_fc": 0.5}
    out = run_gloo(_adacos, cfg)
    assert np.isfinite(out[0]) and out[0] == out[1]
    assert out[0] != pytest.approx(np.sqrt(2) * np.log(20 - 1))  # it did adapt


def _replicated_pfc(rank, world, root, head, out):
    head = copy.deepcopy(head)  # its own storage (spawn hands both ranks one shared-memory tensor)
    torch.manual_seed(0)
    backbone = create_backbone("mbf", num_features=64)
    t = Trainer(backbone, head, ImageFolderDataset(root),
                TrainConfig(output=str(out), epochs=1, batch_size=4, lr=0.05, tensorboard=False, device="cpu"))
    assert not t.head.distributed  # built before the process group: one replicated head
    t.fit()
    return t.head.weight.detach().clone()


def test_partial_fc_built_outside_the_process_group_is_averaged_like_the_backbone(aligned_many, tmp_path):
    torch.manual_seed(0)
    head = PartialFC(64, 20, CombinedMargin(32, 1.0, 0.3, 0.0), sample_rate=0.5)
    out = run_gloo(_replicated_pfc, aligned_many, head, tmp_path / "rep")
    assert out[0].shape == (20, 64) and torch.equal(out[0], out[1])
