"""The Trainer on real aligned LFW faces: determinism, kill-and-resume, DDP, safety."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.models.heads.factory import HEAD_TYPES, build_head
from faceforge.train.config import build_trainer

from ..ddp import run_gloo
from .conftest import config, kill_9_then_resume, same_weights


def test_resume_continues_bit_for_bit(aligned, tmp_path):
    full = build_trainer(config(aligned, tmp_path / "full"))
    hist = full.fit()
    assert len(hist) == 2 and full.step == 8 and all(np.isfinite(h["loss"]) for h in hist)
    part = build_trainer(config(aligned, tmp_path / "part"))
    part.fit(stop_after_steps=3)  # mid-epoch
    resumed = build_trainer(config(aligned, tmp_path / "part"))
    assert resumed.resume() and resumed.step == 3 and resumed.batch_in_epoch == 3
    resumed.fit()
    assert same_weights(full.backbone.state_dict(), resumed.backbone.state_dict())
    assert same_weights(full.head.state_dict(), resumed.head.state_dict())
    assert [h["loss"] for h in resumed.history][1] == hist[1]["loss"]


def test_kill_9_then_resume_gives_the_uninterrupted_weights(aligned, tmp_path):
    kill_9_then_resume(config(aligned, tmp_path / "ref", epochs=3), config(aligned, tmp_path / "run", epochs=3),
                       tmp_path, 12)


def _ddp_worker(rank, world, cfg):
    t = build_trainer(cfg)
    hist = t.fit()
    return {k: v.detach().clone() for k, v in t.backbone.named_parameters()}, hist, t.steps_per_epoch


@pytest.mark.parametrize("head", [{"type": "arcface", "s": 32, "m": 0.3},
                                  {"type": "cosface", "s": 32, "m": 0.3, "partial_fc": 0.5}])
def test_two_process_ddp_with_gloo(aligned, tmp_path, head):
    cfg = config(aligned, tmp_path / "ddp", epochs=1, checkpoint_every=0)
    cfg["head"] = head
    out = run_gloo(_ddp_worker, cfg)
    (p0, h0, spe), (p1, h1, _) = out[0], out[1]
    assert spe == 2  # 32 images / 2 ranks / batch 8
    assert all(torch.equal(p0[k], p1[k]) for k in p0)  # gradients were averaged across ranks
    assert np.isfinite(h0[0]["loss"]) and np.isfinite(h1[0]["loss"])
    assert (tmp_path / "ddp" / "last.rank0.pt").exists() and (tmp_path / "ddp" / "last.rank1.pt").exists()


def test_mismatched_checkpoint_is_refused(aligned, tmp_path):
    t = build_trainer(config(aligned, tmp_path / "a", epochs=1))
    t.fit(stop_after_steps=1)
    other = config(aligned, tmp_path / "a", epochs=1)
    other["model"]["num_features"] = 32
    with pytest.raises(ModelLoadError, match="num_features: checkpoint has 64, this run has 32"):
        build_trainer(other).resume()
    (tmp_path / "a" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="last.pt"):
        build_trainer(config(aligned, tmp_path / "a", epochs=1)).resume()


def test_freeze_patterns_and_best_tracking(aligned, tmp_path):
    cfg = config(aligned, tmp_path / "f", epochs=2, freeze=["backbone.*"], unfreeze=["backbone.features.*"])
    t = build_trainer(cfg)
    before = {k: v.clone() for k, v in t.backbone.named_parameters()}
    head_before = t.head.weight.detach().clone()
    t.fit()
    after = dict(t.backbone.named_parameters())
    frozen = [k for k in before if not k.startswith("features.")]
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["features.layers.2.weight"], after["features.layers.2.weight"])
    assert not torch.equal(head_before, t.head.weight)
    cfg = config(aligned, tmp_path / "all_frozen", freeze=["*"])
    with pytest.raises(FaceForgeError, match="every parameter is frozen"):
        build_trainer(cfg)


def test_lr_schedule(aligned, tmp_path):
    t = build_trainer(config(aligned, tmp_path / "s", epochs=4, warmup_epochs=1, min_lr=0.005))
    f = [t._lr_factor(s) for s in range(t.total_steps)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up over one epoch (4 steps)
    assert f[4] == pytest.approx(1.0) and f[-1] > 0.1 and all(a >= b for a, b in zip(f[4:], f[5:]))
    t2 = build_trainer(config(aligned, tmp_path / "s2", epochs=4, scheduler="poly"))  # warm-up: 2 steps
    assert t2._lr_factor(8) == pytest.approx((1 - (8 - 2) / (16 - 2)) ** 2)


@pytest.mark.parametrize("kind", HEAD_TYPES)
def test_every_head_type_trains_a_step(kind):
    head = build_head({"type": kind, "s": 16}, 32, 5)
    emb = torch.randn(10, 32, requires_grad=True)
    loss = head(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))
    loss.backward()
    if kind == "none":  # no class loss: a distillation loss alone trains the student
        assert loss.item() == 0.0 and emb.grad.abs().sum() == 0
    else:
        assert math.isfinite(loss.item()) and emb.grad.abs().sum() > 0
    with pytest.raises(FaceForgeError, match="unknown head"):
        build_head({"type": "nope"}, 32, 5)


def test_example_config_builds(aligned, tmp_path):
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "arcface_mbf.yaml").read_text())
    cfg["data"]["root"] = str(aligned)
    cfg.pop("val")
    cfg["train"].update(output=str(tmp_path / "x"), device="cpu")
    t = build_trainer(cfg)
    assert t.identity["backbone"] == "mbf" and t.identity["num_classes"] == 8
    with pytest.raises(FaceForgeError, match="unknown train options"):
        build_trainer({**cfg, "train": {**cfg["train"], "learning_rate": 0.1}})


class _Scripted:
    """A callback that reports a scripted validation metric."""

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, trainer, epoch):
        return {"val_acc": self.values[epoch]}


def test_best_model_and_early_stopping(aligned, tmp_path):
    cfg = config(aligned, tmp_path / "es", epochs=6, best_metric="val_acc", early_stop_patience=2,
                 checkpoint_every=0)
    t = build_trainer(cfg, callbacks=[_Scripted([0.5, 0.7, 0.6, 0.65, 0.9, 0.95])])
    hist = t.fit()
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]  # two epochs without beating 0.7: stop
    assert t.best["val_acc"] == 0.7 and t.best["epoch"] == 2
    best = torch.load(tmp_path / "es" / "best.pt", weights_only=True)
    assert json.loads(best["metrics"])["epoch"] == 2


def test_class_balancing_in_a_config(aligned, tmp_path):
    cfg = config(aligned, tmp_path / "bal", epochs=1)
    cfg["data"]["balance"] = 6
    t = build_trainer(cfg)
    counts = np.bincount(t.dataset.targets)
    assert list(counts) == [6] * 8 and len(t.dataset) == 48 and t.dataset.repeat.sum() == 8 * 2
    img_a, _ = t.dataset[4]
    img_b, _ = t.dataset[4]
    assert np.array_equal(img_a, img_b) and t.dataset.repeat[4]  # augmented copies are reproducible
    t.fit(stop_after_steps=1)
