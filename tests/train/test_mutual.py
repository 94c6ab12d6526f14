"""Deep mutual learning: the synchronous loss by hand, the sequential step's frozen peer,
member checkpoints that export, and exact resumption."""
import numpy as np
import pytest
import torch

from faceforge.core.errors import FaceForgeError
from faceforge.models.heads import SoftmaxHead
from faceforge.train.checkpoint import load_checkpoint
from faceforge.train.config import build_trainer
from faceforge.train.export import export_checkpoint
from faceforge.train.mutual import MutualConfig, MutualHead, member_row

from .conftest import config, same_weights


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_synchronous_loss_by_hand():
    torch.manual_seed(0)
    h1, h2 = SoftmaxHead(4, 3).double(), SoftmaxHead(5, 3).double()
    head = MutualHead(h1, h2, (4, 5), MutualConfig(weight=100.0, temperature=2.0))
    emb, y = torch.randn(6, 9, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    got = head(emb, y).item()
    z1 = emb[:, :4].numpy() @ h1.fc.weight.detach().numpy().T + h1.fc.bias.detach().numpy()
    z2 = emb[:, 4:].numpy() @ h2.fc.weight.detach().numpy().T + h2.fc.bias.detach().numpy()
    ce = [-_log_softmax(z)[np.arange(6), y.numpy()].mean() for z in (z1, z2)]

    def kl(target, student, t=2.0):  # KL(target ‖ student) at temperature t, × t²
        lp, lq = _log_softmax(target / t), _log_softmax(student / t)
        return (np.exp(lp) * (lp - lq)).sum(axis=1).mean() * t * t
    assert got == pytest.approx(ce[0] + ce[1] + 100 * (kl(z2, z1) + kl(z1, z2)), rel=1e-9)


def test_sequential_alpha_and_bad_settings():
    cfg = MutualConfig(mode="sequential")
    assert cfg.alpha(0) == pytest.approx(1 - 0.1 / 25) and cfg.alpha(24) == pytest.approx(1 - 24.1 / 25)
    assert cfg.alpha(30) == 0.0
    with pytest.raises(FaceForgeError, match="synchronous or sequential"):
        MutualConfig.from_section({"mode": "both"})
    with pytest.raises(FaceForgeError, match="unknown mutual options"):
        MutualConfig.from_section({"mode": "sequential", "tau": 1})


def _dml(aligned, out, mode, **train):
    cfg = config(aligned, out, **train)
    cfg["model"] = {"backbone": "mbf", "num_features": 32, "scale": 1}
    cfg["mutual"] = {"mode": mode, "temperature": 6.0} if mode == "sequential" else {"mode": mode, "weight": 1.0}
    return cfg


def test_sequential_step_leaves_the_frozen_model_untouched(aligned, tmp_path):
    t = build_trainer(_dml(aligned, tmp_path, "sequential"))
    images, labels, _ = next(iter(t._loader(0, 0)))
    x = t.preprocess(images)
    m1, m2 = t.backbone.models
    t.backbone.train()

    def snap(m):  # parameters and BatchNorm statistics
        return {k: v.clone() for k, v in m.state_dict().items()}
    a1, a2 = snap(m1), snap(m2)
    t.member_step(0, x, labels)
    assert same_weights(a2, snap(m2)), "model 2 is frozen while model 1 steps"
    assert not same_weights(a1, snap(m1))
    assert m2.training, "the frozen model returns to the mode it was in"
    b1 = snap(m1)
    t.member_step(1, x, labels)
    assert same_weights(b1, snap(m1)) and not same_weights(a2, snap(m2))


def test_both_models_are_checkpointed_exported_and_resumed(aligned, tmp_path):
    pairs = tmp_path / "val_pairs.txt"
    names = sorted(p.relative_to(aligned).as_posix() for p in aligned.glob("*/*"))
    pairs.write_text("".join(f"{names[i]} {names[j]} {int(names[i].split('/')[0] == names[j].split('/')[0])}\n"
                             for i in range(0, 32, 3) for j in range(1, 32, 5)))
    for mode in ("synchronous", "sequential"):
        cfg = _dml(aligned, tmp_path / mode, mode, best_metric="val_acc_model1")
        cfg["val"] = {"pairs": str(pairs), "root": str(aligned)}
        full = build_trainer(cfg)
        hist = full.fit()
        assert {"val_acc_model1", "val_acc_model2"} <= set(hist[-1])
        best = load_checkpoint(tmp_path / mode / "model1" / "best.pt")
        assert set(best["backbone"]) == set(full.backbone.models[0].state_dict())
        res = export_checkpoint(tmp_path / mode / "model2" / "last.pt", tmp_path / f"{mode}.safetensors", "safetensors")
        assert res["threshold"] == pytest.approx(hist[-1]["val_threshold_model2"])
        part_cfg = _dml(aligned, tmp_path / f"{mode}_part", mode, best_metric="val_acc_model1")
        part_cfg["val"] = cfg["val"]
        build_trainer(part_cfg).fit(stop_after_steps=3)
        resumed = build_trainer(part_cfg)
        assert resumed.resume() and resumed.step == 3
        resumed.fit()
        assert same_weights(full.backbone.state_dict(), resumed.backbone.state_dict()), mode
        assert same_weights(full.head.state_dict(), resumed.head.state_dict()), mode


def test_member_rows_read_like_a_single_model():
    row = {"epoch": 1, "val_acc_model1": 0.9, "val_acc_model2": 0.8, "loss": 2.0}
    assert member_row(row, 1) == {"epoch": 1, "val_acc": 0.8, "loss": 2.0}
    assert member_row(row, 0) == {"epoch": 1, "val_acc": 0.9, "loss": 2.0}
