"""Distillation: each loss recomputed by hand, teachers, and whole runs on real faces."""
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from faceforge.core.errors import FaceForgeError
from faceforge.models.losses.distill import EmbeddingMatch, FeatureMatch, logit_kd
from faceforge.train.checkpoint import load_checkpoint
from faceforge.train.config import build_trainer
from faceforge.train.distill import DistillConfig, Distiller, cosine_alpha
from faceforge.train.teachers import EnsembleTeacher, PrecomputedTeacher, TeacherOutput

from .conftest import config, kill_9_then_resume, same_weights


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_logit_kd_by_hand():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 7)) * 4, rng.normal(size=(5, 7)) * 4
    for temp in (1.0, 2.0, 6.0):
        p, q = _softmax(t / temp), _softmax(s / temp)
        want = (p * (np.log(p) - np.log(q))).sum(axis=1).mean() * temp ** 2
        got = logit_kd(torch.tensor(s), torch.tensor(t), temp).item()
        assert got == pytest.approx(want, rel=1e-9)
    assert logit_kd(torch.tensor(t), torch.tensor(t), 2.0).item() == pytest.approx(0.0, abs=1e-12)


def test_feature_match_by_hand():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 4, 4))
    fm = FeatureMatch(3, 5).double()
    w = fm.adapter.weight.detach().numpy()[:, :, 0, 0]  # 5×3: a 1×1 convolution mixes channels
    mapped = np.einsum("oc,nchw->nohw", w, s)
    assert fm(torch.tensor(s), torch.tensor(t)).item() == pytest.approx(((mapped - t) ** 2).mean(), rel=1e-9)
    same = FeatureMatch(5, 5)
    assert isinstance(same.adapter, torch.nn.Identity)
    assert same(torch.tensor(t), torch.tensor(t * 0)).item() == pytest.approx((t ** 2).mean(), rel=1e-6)
    # a smaller student map is resized to the teacher's before the comparison
    assert FeatureMatch(5, 5)(torch.zeros(1, 5, 2, 2), torch.ones(1, 5, 4, 4)).item() == pytest.approx(1.0)


def test_embedding_match_by_hand():
    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    sn, tn = s / np.linalg.norm(s, axis=1, keepdims=True), t / np.linalg.norm(t, axis=1, keepdims=True)
    assert EmbeddingMatch(4, 4, "cosine")(torch.tensor(s), torch.tensor(t)).item() == \
        pytest.approx((1 - (sn * tn).sum(1)).mean(), rel=1e-9)
    assert EmbeddingMatch(4, 4, "mse")(torch.tensor(s), torch.tensor(t)).item() == \
        pytest.approx(((sn - tn) ** 2).sum(1).mean(), rel=1e-9)
    proj = EmbeddingMatch(4, 3, "cosine").double()  # dimensions differ: a learned projection
    p = s @ proj.projection.weight.detach().numpy().T
    pn, t3 = p / np.linalg.norm(p, axis=1, keepdims=True), tn[:, :3] / np.linalg.norm(tn[:, :3], axis=1, keepdims=True)
    assert proj(torch.tensor(s), torch.tensor(t[:, :3])).item() == pytest.approx((1 - (pn * t3).sum(1)).mean(), rel=1e-9)
    with pytest.raises(ValueError, match="cosine or mse"):
        EmbeddingMatch(4, 4, "l1")


def test_alpha_anneals_by_a_cosine():
    assert cosine_alpha(0.99, 0.0099, 0, 11) == pytest.approx(0.99)
    assert cosine_alpha(0.99, 0.0099, 10, 11) == pytest.approx(0.0099)
    assert cosine_alpha(0.99, 0.0099, 5, 11) == pytest.approx((0.99 + 0.0099) / 2)
    a = [cosine_alpha(0.99, 0.0099, e, 11) for e in range(11)]
    assert all(x > y for x, y in zip(a, a[1:]))


class _Fixed:
    """A teacher that answers with fixed outputs (the loss rule is what is checked here)."""

    def __init__(self, out: TeacherOutput, classes: int | None) -> None:
        self.out, self.dim, self.num_classes = out, out.embedding.shape[1], classes

    def __call__(self, index, images, want_features=False):
        return self.out

    def to(self, device):
        return self


def test_the_total_loss_combines_the_parts_as_stated():
    torch.manual_seed(0)
    emb, t_emb, t_logits = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 3) * 5
    w_cls = torch.randn(3, 8)
    student_logits = lambda e: e @ w_cls.T  # noqa: E731
    cfg = DistillConfig(kd_weight=100.0, temperature=2.0, embedding_weight=3.0)
    d = Distiller(cfg, _Fixed(TeacherOutput(t_emb, t_logits), 3), torch.nn.Identity(), 8, None)
    ce = torch.tensor(1.7)
    total, parts = d.loss(ce, emb, student_logits, TeacherOutput(t_emb, t_logits), epoch=2, epochs=5)
    a = cosine_alpha(0.99, 0.0099, 2, 5)
    kd = logit_kd(student_logits(emb), t_logits, 2.0).item()
    cos = torch.nn.functional.cosine_similarity(emb, t_emb).numpy()
    want = (1 - a) * 1.7 + 100 * a * kd + 3.0 * (1 - cos).mean()
    assert total.item() == pytest.approx(want, rel=1e-5)
    assert parts["alpha"] == a and parts["kd"] == pytest.approx(kd)
    with pytest.raises(FaceForgeError, match="needs a teacher with a head"):
        Distiller(cfg, _Fixed(TeacherOutput(t_emb), None), torch.nn.Identity(), 8, None)
    with pytest.raises(FaceForgeError, match="at least one of"):
        DistillConfig.from_section({"teacher": {}, "kd": {"weight": 0}})
    with pytest.raises(FaceForgeError, match="unknown distill.kd options"):
        DistillConfig.from_section({"teacher": {}, "kd": {"weight": 1, "tmp": 2}})


def _parquet(path: Path, paths: list[str], emb: np.ndarray, face_index: list[int] | None = None) -> Path:
    cols = {"path": paths, "embedding": [list(map(float, e)) for e in emb]}
    if face_index is not None:
        cols["face_index"] = pa.array(face_index, pa.int32())
    pq.write_table(pa.table(cols), path)
    return path


def test_precomputed_teacher_finds_rows_by_folder_and_stem(tmp_path):
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)
    # photos, in another order, with an extra face in one of them; keys are the crops'
    p = _parquet(tmp_path / "t.parquet", ["/photos/b/2.jpg", "/photos/a/1.jpg", "/photos/a/1.jpg", "/x/c/3.png"],
                 emb, [0, 0, 1, 0])
    t = PrecomputedTeacher(p, ["a/1", "b/2", "c/3"])
    got = t(torch.tensor([0, 2, 1]), None).embedding
    assert torch.equal(got, torch.tensor(emb[[1, 3, 0]]))
    with pytest.raises(FaceForgeError, match=r"lack 1 of the 2 training images .*'d/4'") as err:
        PrecomputedTeacher(p, ["a/1", "d/4"])
    assert str(p) in str(err.value)
    w = torch.randn(2, 3)
    logits = PrecomputedTeacher(p, ["a/1"], head_weight=w, scale=10.0)(torch.tensor([0]), None).logits
    e = torch.tensor(emb[1])
    assert torch.allclose(logits[0], 10 * (torch.nn.functional.normalize(w) @ (e / e.norm()))), "s·cos"
    # two photos that one crop could stand for (same folder and name, other root or format)
    twice = _parquet(tmp_path / "twice.parquet", ["/photos/a/1.jpg", "/other/a/1.png", "/photos/b/2.jpg"], emb[:3])
    with pytest.raises(FaceForgeError, match=r"1 training images match more than one .*'a/1'.*1.png") as err:
        PrecomputedTeacher(twice, ["a/1", "b/2"])
    assert str(twice) in str(err.value)
    assert PrecomputedTeacher(twice, ["b/2"]).dim == 3  # an ambiguity no crop needs is no error


def test_ensemble_teacher_cosines_are_the_mean_of_its_members(tmp_path):
    rng = np.random.default_rng(3)
    keys = ["a/1", "a/2", "b/1"]
    paths = [f"/p/{k}.jpg" for k in keys]
    e1, e2 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 6)).astype(np.float32)
    t = EnsembleTeacher([PrecomputedTeacher(_parquet(tmp_path / "1.parquet", paths, e1), keys),
                         PrecomputedTeacher(_parquet(tmp_path / "2.parquet", paths, e2), keys)])
    out = t(torch.arange(3), None).embedding.numpy()
    assert t.dim == 10 and np.allclose(np.linalg.norm(out, axis=1), 1)

    def cos(m):
        m = m / np.linalg.norm(m, axis=1, keepdims=True)
        return m @ m.T
    assert np.allclose(out @ out.T, (cos(e1) + cos(e2)) / 2, atol=1e-6)


# ---- whole runs on the aligned LFW faces ---------------------------------------------------
def _teacher_fc(aligned: Path, out: Path) -> Path:
    """The teacher-FC step: an MBF with every backbone weight frozen, only its FC trained."""
    cfg = config(aligned, out, epochs=1, freeze=["backbone.*"], lr=0.5)
    t = build_trainer(cfg)
    before = {k: v.clone() for k, v in t.backbone.state_dict().items()}
    t.fit()
    assert t.backbone_frozen and same_weights(before, t.backbone.state_dict()), \
        "a frozen backbone keeps its weights and its BatchNorm statistics"
    return out / "last.pt"


def _student(aligned: Path, out: Path, teacher: Path, **train) -> dict:
    cfg = config(aligned, out, **train)
    cfg["model"] = {"backbone": "mbf", "num_features": 32, "scale": 1}
    cfg["distill"] = {"teacher": {"checkpoint": str(teacher)},
                      "kd": {"weight": 100, "temperature": 2},
                      "features": {"weight": 10, "student_layer": "layers.0", "teacher_layer": "layers.0"},
                      "embedding": {"weight": 1.0}}
    return cfg


def test_logit_feature_and_embedding_distillation_train_from_a_teacher_checkpoint(aligned, tmp_path):
    teacher = _teacher_fc(aligned, tmp_path / "teacher")
    t = build_trainer(_student(aligned, tmp_path / "student", teacher, epochs=2))
    assert t.distiller.embedding is not None and t.distiller.features is not None
    hist = t.fit()
    for row in hist:
        assert all(math.isfinite(row[f"distill_{k}"]) for k in ("ce", "kd", "feature_mse", "embedding"))
    assert hist[0]["distill_alpha"] == pytest.approx(0.99) and hist[1]["distill_alpha"] == pytest.approx(0.0099)
    saved = load_checkpoint(tmp_path / "student" / "last.pt")
    assert "features.adapter.weight" in saved["distill"]  # the adapter is trained and saved
    # the teacher is not part of the student: its weights are not in the checkpoint
    assert not any(k.startswith("teacher") for k in saved["distill"])


def test_embedding_distillation_needs_no_labels(aligned, tmp_path):
    """head: none and the unlabelled faces of another folder: the embedding loss alone trains."""
    cfg = config(aligned, tmp_path / "run", epochs=3, lr=0.1)
    cfg["head"] = {"type": "none"}
    cfg["data"]["unlabelled"] = [str(aligned)]
    cfg["distill"] = {"teacher": {"backbone": "mbf", "num_features": 64}, "embedding": {"weight": 1.0}}
    t = build_trainer(cfg)
    assert (t.dataset.targets == -1).sum() == 32 and len(t.dataset) == 64
    hist = t.fit()
    assert hist[-1]["distill_embedding"] < hist[0]["distill_embedding"]
    cfg["head"] = {"type": "triplet"}
    with pytest.raises(FaceForgeError, match="unlabelled faces cannot"):
        build_trainer(cfg)


def test_bad_distillation_settings_name_the_problem(aligned, tmp_path):
    teacher = _teacher_fc(aligned, tmp_path / "teacher")
    cfg = _student(aligned, tmp_path / "s", teacher)
    cfg["head"] = {"type": "arcface", "partial_fc": 0.5}
    with pytest.raises(FaceForgeError, match="needs a full FC or softmax head"):
        build_trainer(cfg)
    cfg = _student(aligned, tmp_path / "s", teacher)
    cfg["distill"]["features"]["student_layer"] = "nope"
    with pytest.raises(FaceForgeError, match="student has no layer 'nope'"):
        build_trainer(cfg)
    cfg = config(aligned, tmp_path / "s")
    cfg["distill"] = {"teacher": {"embeddings": str(_parquet(tmp_path / "few.parquet", ["/x/a/1.jpg"],
                                                             np.ones((1, 4))))}, "embedding": {"weight": 1}}
    with pytest.raises(FaceForgeError, match="teacher embeddings lack 32 of the 32"):
        build_trainer(cfg)


def test_a_distillation_run_resumes_after_kill_9_with_identical_weights(aligned, tmp_path):
    teacher = _teacher_fc(aligned, tmp_path / "teacher")
    kill_9_then_resume(_student(aligned, tmp_path / "ref", teacher, epochs=3),
                       _student(aligned, tmp_path / "run", teacher, epochs=3), tmp_path, 12,
                       parts=("backbone", "head", "distill"))


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs").glob("distill_*.yaml")),
                         ids=lambda p: p.stem)
def test_committed_distillation_configs_are_valid(path):
    from faceforge.train.config import load_yaml, train_config
    from faceforge.train.mutual import MutualConfig
    cfg = load_yaml(path)
    train_config(cfg["train"])
    if "distill" in cfg:
        DistillConfig.from_section(cfg["distill"])
    if "mutual" in cfg:
        MutualConfig.from_section(cfg["mutual"])
    assert cfg["data"]["list"] == "bench/data/lfw_split/train.txt"  # the training identities only


def test_settings_that_would_train_wrongly_are_refused(aligned, tmp_path):
    cfg = config(aligned, tmp_path / "a")
    cfg["head"] = {"type": "none"}
    with pytest.raises(FaceForgeError, match="learns nothing without a distill section"):
        build_trainer(cfg)
    cfg = config(aligned, tmp_path / "b")
    cfg["data"].update(unlabelled=[str(aligned)], balance=4)
    with pytest.raises(FaceForgeError, match="cannot take data.unlabelled"):
        build_trainer(cfg)
    cfg = config(aligned, tmp_path / "c")
    cfg["distill"] = {"teacher": {"backbone": "mbf", "num_features": 64, "root": str(aligned)},
                      "features": {"weight": 1, "student_layer": "layers.0", "teacher_layer": "layers.0"}}
    with pytest.raises(FaceForgeError, match="must see the student's crops"):
        build_trainer(cfg)
    with pytest.raises(FaceForgeError, match=r"alpha is \[first, last\]"):
        DistillConfig.from_section({"teacher": {}, "kd": {"weight": 1, "alpha": 0.5}})


def test_a_checkpoint_without_saved_generators_is_refused_by_name(aligned, tmp_path):
    t = build_trainer(config(aligned, tmp_path, epochs=1))
    t.fit(stop_after_steps=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["torch_rng"] = state.pop("rng")["torch"]  # what older versions wrote
    torch.save(state, tmp_path / "last.pt")
    from faceforge.core.errors import ModelLoadError
    with pytest.raises(ModelLoadError, match="no saved random generators") as err:
        build_trainer(config(aligned, tmp_path, epochs=1)).resume()
    assert "last.pt" in str(err.value)
