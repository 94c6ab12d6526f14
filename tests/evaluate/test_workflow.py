"""faceforge.evaluate.workflow: each protocol's result against a brute-force computation on
synthetic embeddings, and the folder-embedding loader on real faces."""
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import faceforge.evaluate.workflow as wf
from faceforge.core.errors import FaceForgeError
from faceforge.evaluate.inputs import EmbeddingSet
from faceforge.io.embeddings import read_embeddings
from faceforge.pipeline import FacePipeline


def synthetic(n_ids: int = 5, per: int = 4, seed: int = 0, spread: float = 1.0, name: str = "set",
              draw: int = 0) -> EmbeddingSet:
    """Unit vectors scattered around one random unit centre per identity (the same centres
    for one seed, other vectors for another draw); the quality column `q` is each vector's
    cosine to its centre."""
    centres = np.random.default_rng(seed).normal(size=(n_ids, 16))
    centres = (centres / np.linalg.norm(centres, axis=1, keepdims=True)).repeat(per, axis=0)
    v = centres + spread * np.random.default_rng([seed, draw]).normal(size=centres.shape) / 4
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    ids = np.repeat([f"id{i}" for i in range(n_ids)], per)
    paths = [f"/data/{i}/{k}.jpg" for i, k in zip(ids, np.tile(np.arange(per), n_ids))]
    table = pa.table({"path": paths, "q": np.einsum("ij,ij->i", v, centres)})
    return EmbeddingSet(Path(f"/data/{name}.parquet"), paths, ids, v, table)


def mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def test_verification_all_pairs_and_pair_list(tmp_path):
    emb = synthetic()
    pairs = list(combinations(range(len(emb.paths)), 2))
    scores = np.array([float(emb.vectors[i] @ emb.vectors[j]) for i, j in pairs])
    same = np.array([emb.identities[i] == emb.identities[j] for i, j in pairs])
    res = wf.run_verification(emb, fprs=[0.1], out_dir=tmp_path / "all")
    assert (res["name"], res["protocol"]) == ("set", "all pairs")
    assert res["pairs"] == len(pairs) and res["positives"] == int(same.sum())
    assert res["auc"] == pytest.approx(mann_whitney_auc(scores[same], scores[~same]), abs=1e-6)
    written = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert written["auc"] == pytest.approx(res["auc"]) and (tmp_path / "all" / "roc.png").stat().st_size > 0
    # the same pairs as a list, by identity/file, plus one naming an image without an embedding
    rel = lambda k: "/".join(emb.paths[k].split("/")[-2:])  # noqa: E731
    lines = [f"{rel(i)} {rel(j)} {int(s)}" for (i, j), s in zip(pairs, same)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines + ["nobody/0.jpg id0/0.jpg 1"]) + "\n")
    with pytest.raises(FaceForgeError, match="1 images .* no embedding .*nobody/0.jpg.*--on-missing drop"):
        wf.run_verification(emb, tmp_path / "pairs.txt")
    listed = wf.run_verification(emb, tmp_path / "pairs.txt", drop_missing=True, fprs=[0.1], name="listed")
    assert listed["name"] == "listed" and listed["pairs_dropped_missing_image"] == 1
    assert listed["pairs"] == len(pairs) and listed["auc"] == pytest.approx(res["auc"], abs=1e-9)


def test_identification_rank_one_by_brute_force(tmp_path):
    full = synthetic(n_ids=6, per=4, seed=1)
    g_rows = [i for i in range(len(full.paths)) if i % 4 < 2 and full.identities[i] not in ("id4", "id5")]
    q_rows = [i for i in range(len(full.paths)) if i % 4 >= 2]
    sub = lambda rows, name: EmbeddingSet(full.source.with_name(f"{name}.parquet"),  # noqa: E731
                                          [full.paths[i] for i in rows], full.identities[rows], full.vectors[rows],
                                          full.table.take(rows))
    g, q = sub(g_rows, "gallery"), sub(q_rows, "probes")
    res = wf.run_identification(q, g, g, fpirs=[0.5], max_rank=3, out_dir=tmp_path)
    mated = np.isin(q.identities, g.identities)
    best = g.identities[np.argmax(q.vectors @ g.vectors.T, axis=1)]
    o = res["open_set"]
    assert (o["mated"], o["non_mated"]) == (int(mated.sum()), int((~mated).sum()))
    assert o["cmc"]["1"] == pytest.approx(np.mean(best[mated] == q.identities[mated]))
    assert list(o["cmc"]) == ["1", "5", "10", "3"] and len(o["cmc_curve"]) == 3
    assert o["cmc_curve"][0] == o["cmc"]["1"] and np.all(np.diff(o["cmc_curve"]) >= 0)
    assert list(res["with_distractors"]) == ["0.5"] and res["probes"] == str(q.source)
    assert json.loads((tmp_path / "metrics.json").read_text())["open_set"]["mated"] == o["mated"]
    assert (tmp_path / "cmc.png").stat().st_size > 0
    with pytest.raises(FaceForgeError, match="gallery, distractors or both"):
        wf.run_identification(q)


def test_topk_one_by_brute_force(tmp_path):
    g, q = synthetic(seed=2, name="g"), synthetic(seed=2, name="q", draw=1)
    sims = q.vectors @ g.vectors.T
    top, score = g.identities[sims.argmax(axis=1)], sims.max(axis=1)
    thr = float(np.median(score))
    res = wf.run_topk(q, g, ks=[1], threshold=thr, target_precision=0.5, out_dir=tmp_path)
    r = res["k"]["1"]["at_threshold"]
    accepted = score >= thr
    assert r["accepted"] == int(accepted.sum())
    assert r["precision"] == pytest.approx(np.mean(top[accepted] == q.identities[accepted]))
    assert r["recall"] == pytest.approx(np.sum((top == q.identities) & accepted) / len(q.paths))
    assert res["k"]["1"]["at_target_precision"]["precision"] >= 0.5
    assert list(wf.run_topk(q, g)["k"]) == ["1", "3"]  # the default Ks, no threshold rule
    assert (tmp_path / "precision_recall.png").stat().st_size > 0


def test_erc_pair_list_equals_all_pairs(tmp_path):
    emb = synthetic(seed=3)
    rel = lambda k: "/".join(emb.paths[k].split("/")[-2:])  # noqa: E731
    (tmp_path / "pairs.txt").write_text("".join(
        f"{rel(i)} {rel(j)} {int(emb.identities[i] == emb.identities[j])}\n"
        for i, j in combinations(range(len(emb.paths)), 2)))
    every = wf.run_erc(emb, ["q"], fmrs=[0.1], out_dir=tmp_path / "every")
    listed = wf.run_erc(emb, ["q"], tmp_path / "pairs.txt", fmrs=[0.1])
    a, b = every["qualities"]["q"], listed["qualities"]["q"]
    assert a["fractions"] == pytest.approx(b["fractions"])
    assert a["curves"]["0.1"]["fnmr"] == pytest.approx(b["curves"]["0.1"]["fnmr"])
    assert (tmp_path / "every" / "erc.png").stat().st_size > 0
    with pytest.raises(FaceForgeError, match="no column 'nope'"):
        wf.run_erc(emb, ["nope"])


def test_ijb_features_are_read_when_cached_and_written_otherwise(tmp_path, monkeypatch):
    raw, flip = np.arange(12, dtype=np.float32).reshape(3, 4), -np.ones((3, 4), np.float32)

    class Net:
        name = "fake-net"

    monkeypatch.setattr(wf, "embed_ijb", lambda proto, emb, batch_size: (raw, flip))
    got = wf.ijb_features(None, Net, tmp_path / "f.npz")
    assert got[2] == "fake-net" and np.array_equal(got[0], raw) and np.array_equal(got[1], flip)

    def never():
        raise AssertionError("a cached feature file needs no network")
    monkeypatch.setattr(wf, "embed_ijb", lambda *a: never())
    again = wf.ijb_features(None, never, tmp_path / "f.npz")
    assert again[2] == str(tmp_path / "f.npz") and np.array_equal(again[0], raw) and np.array_equal(again[1], flip)


def test_load_embeddings_builds_the_pipeline_only_for_a_folder(tmp_path, lfw_root):
    def never():
        raise AssertionError("a Parquet needs no pipeline")
    folder = tmp_path / "faces"
    for name in ("Colin_Powell", "Tony_Blair"):
        (folder / name).mkdir(parents=True)
        for f in sorted((lfw_root / "images" / name).iterdir())[:2]:
            (folder / name / f.name).symlink_to(f)
    with pytest.raises(FaceForgeError, match="needs a pipeline"):
        wf.load_embeddings(folder, tmp_path / "out")
    pipe = FacePipeline("yunet", "sface")
    said = []
    emb = wf.load_embeddings(folder, tmp_path / "out", lambda: pipe, said.append)
    target = tmp_path / "out" / "embeddings-faces.parquet"
    assert emb.source == target and len(said) == 1 and "embedded 4 new faces" in said[0]
    for path, vec in zip(emb.paths, emb.vectors):  # each image's central face, as the pipeline embeds it
        assert np.allclose(vec, pipe.embed_file(path, select="central")[1][0], atol=1e-5)
    assert sorted(set(emb.identities)) == ["Colin_Powell", "Tony_Blair"]
    again = wf.load_embeddings(target, pipeline=never)
    assert again.paths == emb.paths and read_embeddings(target).num_rows == 4


def test_similarity_matrix_labels_every_face(tmp_path, face_jpg, two_faces_jpg):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").symlink_to(face_jpg)
    (folder / "b.jpg").symlink_to(two_faces_jpg)
    (folder / "c.jpg").write_bytes(b"not an image")
    pipe = FacePipeline("yunet", "sface")
    res = wf.similarity_matrix(folder, pipe, tmp_path / "m.png")
    assert res["labels"] == ["a.jpg", "b.jpg", "b.jpg#1"]
    assert [s["path"] for s in res["skipped"]] == [str(folder / "c.jpg")]
    e = np.concatenate([pipe.embed_file(folder / "a.jpg")[1], pipe.embed_file(folder / "b.jpg")[1]])
    assert np.allclose(res["matrix"], e @ e.T, atol=1e-4)
    assert (tmp_path / "m.png").stat().st_size > 10_000
    with pytest.raises(FaceForgeError, match="no faces found"):
        wf.similarity_matrix(folder / "c.jpg", pipe, tmp_path / "n.png")
