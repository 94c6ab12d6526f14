"""IJB-C 1:1 end to end on a protocol written in the official formats from LFW images,
with pooling and scores recomputed by plain loops."""
import shutil

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.ijbc import (MODES, embed_ijb, evaluate_ijb, image_features, meta_path, pair_scores,
                                     read_ijb, template_features, write_ijb_protocol)
from faceforge.models.embedders import create_embedder
from faceforge.vision.detectors import create_detector


@pytest.fixture(scope="module")
def ijb(lfw_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ijbc")
    info = write_ijb_protocol(lfw_root / "images", out, create_detector("yunet"), templates_per_identity=3,
                              media_size=2, min_images=6, max_images_per_identity=7, max_identities=8)
    proto = read_ijb(out)
    raw, raw_flip = embed_ijb(proto, create_embedder("sface"), batch_size=16, show_progress=False)
    return out, info, proto, raw, raw_flip


def test_written_protocol_reads_back(ijb):
    out, info, proto, _, _ = ijb
    assert len(proto.images) == info["images"] and info["identities"] == 8
    assert len(np.unique(proto.templates)) == info["templates"] == 24
    assert (out / "loose_crop" / proto.images[0]).is_file()
    ident = {n: src.split("/")[-2] for n, src in info["sources"].items()}
    owner = {}
    for name, t, m in zip(proto.images, proto.templates, proto.medias):
        assert owner.setdefault(t, ident[name]) == ident[name]   # one identity per template
    for (a, b), same in zip(proto.pairs, proto.labels):
        assert same == (owner[a] == owner[b])
    assert proto.labels.sum() == info["genuine_pairs"] == 8 * 3  # C(3, 2) per identity
    assert (~proto.labels).sum() == info["impostor_pairs"] == 24 * 21 // 2
    assert 2 in np.bincount(np.unique(np.c_[proto.templates, proto.medias], axis=0, return_inverse=True)[1].ravel())
    assert proto.landmarks.shape == (len(proto.images), 5, 2) and (proto.det_scores > 0.5).all()


def reference_template_features(feats, templates, medias):
    """The reference loop: per template, per media mean, summed, then normalised."""
    out = {}
    for t in np.unique(templates):
        ft, mt = feats[templates == t], medias[templates == t]
        total = sum(ft[mt == m].mean(axis=0) for m in np.unique(mt))
        out[int(t)] = total / np.linalg.norm(total)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_pooling_and_scores_match_reference_loops(ijb, mode):
    _, _, proto, raw, raw_flip = ijb
    norm, det, flip = mode[1] == "1", mode[3] == "1", mode[5] == "1"
    f = raw + raw_flip if flip else raw.copy()
    f = f if norm else f / np.linalg.norm(f, axis=1, keepdims=True)
    f = f * proto.det_scores[:, None] if det else f
    assert np.allclose(image_features(raw, raw_flip, proto.det_scores, mode), f, atol=1e-6)
    tids, tf = template_features(f, proto.templates, proto.medias)
    ref = reference_template_features(f.astype(np.float64), proto.templates, proto.medias)
    assert list(tids) == sorted(ref) and np.allclose(tf, np.stack([ref[t] for t in tids]), atol=1e-5)
    brute = [float(ref[a] @ ref[b]) for a, b in proto.pairs]
    for method in ("gather", "blocks"):
        scores = pair_scores(tids, tf, proto.pairs, method=method, chunk=7, block=5)
        assert np.allclose(scores, brute, atol=1e-5)


def test_end_to_end_table(ijb):
    _, _, proto, raw, raw_flip = ijb
    with pytest.warns(UserWarning):  # 252 impostor pairs: FPR 1e-3 and below are not measurable
        res, curves = evaluate_ijb(proto, raw, raw_flip, modes=("N0D0F0", "N1D1F1"))
    for mode in ("N0D0F0", "N1D1F1"):
        m = res["modes"][mode]
        assert m["auc"] > 0.97 and m["eer"]["eer"] < 0.1       # sface separates LFW identities
        assert np.isnan(m["tpr_at_fpr"]["1e-06"]["tpr"]) and m["tpr_at_fpr"]["0.1"]["tpr"] > 0.8
    assert res["genuine_pairs"] == 24 and set(curves) == {"N0D0F0", "N1D1F1"}
    with pytest.raises(FaceForgeError, match="do not match"):
        evaluate_ijb(proto, raw[:-1], raw_flip[:-1])
    with pytest.raises(FaceForgeError, match="unknown mode"):
        image_features(raw, raw_flip, proto.det_scores, "F")


def corrupt(src, tmp_path, kind, edit):
    dst = tmp_path / "p"
    shutil.copytree(src / "meta", dst / "meta")
    f = meta_path(dst, "IJBC", kind)
    f.write_text(edit(f.read_text()))
    return dst


def test_malformed_protocol_files_are_named(ijb, tmp_path):
    out = ijb[0]
    bad = corrupt(out, tmp_path, "template_pair_label", lambda t: t.replace(" 1\n", " 1.0\n", 1))
    with pytest.raises(FaceForgeError, match="template_pair_label.txt.*malformed"):
        read_ijb(bad)
    shutil.rmtree(bad)
    bad = corrupt(out, tmp_path, "template_pair_label", lambda t: t + "9999 1 0\n")
    with pytest.raises(FaceForgeError, match="no image belongs to.*9999"):
        read_ijb(bad)
    shutil.rmtree(bad)
    bad = corrupt(out, tmp_path, "face_tid_mid", lambda t: "\n".join(t.splitlines()[::-1]) + "\n")
    with pytest.raises(FaceForgeError, match="disagree at row 1"):
        read_ijb(bad)
    shutil.rmtree(bad)
    bad = corrupt(out, tmp_path, "name_5pts_score", lambda t: t.replace(" ", " x ", 1))
    with pytest.raises(FaceForgeError, match="name_5pts_score.txt.*malformed"):
        read_ijb(bad)
    with pytest.raises(FaceForgeError, match="not found"):
        read_ijb(tmp_path / "nowhere")


def test_cli_computes_then_reuses_features(ijb, tmp_path):
    import json

    from typer.testing import CliRunner

    from faceforge.cli.main import app
    out, _, proto, raw, raw_flip = ijb
    runner = CliRunner()
    args = ["eval", "ijbc", str(out), "--mode", "N0D0F0", "--mode", "N0D0F1", "--fpr", "0.1",
            "--features", str(tmp_path / "f.npz"), "--out", str(tmp_path / "res"), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    refused = runner.invoke(app, args)  # the results are there: not replaced without asking
    assert refused.exit_code == 2 and "--overwrite" in json.loads(refused.stdout)["error"]
    again = runner.invoke(app, args + ["--overwrite"])  # reads f.npz instead of embedding
    res = json.loads(first.stdout)
    assert json.loads(again.stdout)["modes"] == res["modes"]
    ref, _ = evaluate_ijb(proto, raw, raw_flip, modes=("N0D0F0", "N0D0F1"), fprs=(0.1,))
    for mode in ("N0D0F0", "N0D0F1"):
        assert res["modes"][mode]["tpr_at_fpr"]["0.1"]["tpr"] == pytest.approx(ref["modes"][mode]["tpr_at_fpr"]["0.1"]["tpr"])
        assert res["modes"][mode]["auc"] == pytest.approx(ref["modes"][mode]["auc"], abs=1e-6)
    assert (tmp_path / "res" / "roc.png").is_file() and (tmp_path / "res" / "tpr_at_fpr_N0D0F1.csv").is_file()
