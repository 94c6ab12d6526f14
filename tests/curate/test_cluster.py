"""Global clustering: kNN against brute force, edges and communities by hand, every method on
separable data, incremental assignment, real faces."""
from __future__ import annotations

import numpy as np
import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.curate.cluster import (
    BASELINES, GRAPH_METHODS, METHODS, _weighted_vote, assign_new, cluster_embeddings, graph_communities,
    graph_edges, knn,
)
from faceforge.curate.metrics import pairwise_prf


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _blobs(n_per=(12, 9, 7, 5), d=32, spread=0.15, seed=0):
    """Tight clusters around random directions; similarity within ≈ 0.98, across ≈ 0."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(len(n_per), d)))
    x = np.concatenate([c + spread / np.sqrt(d) * rng.normal(size=(m, d)) for c, m in zip(centres, n_per)])
    y = np.repeat(np.arange(len(n_per)), n_per)
    return _unit(x), y, centres


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_knn_matches_brute_force(index):
    rng = np.random.default_rng(1)
    e = _unit(rng.normal(size=(600, 16)))
    sims, nbrs = knn(e, k=5, index=index, nlist=8, nprobe=8)
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    truth = np.argsort(-s, axis=1)[:, :5]
    assert not (nbrs == np.arange(600)[:, None]).any()  # never itself
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(nbrs, truth)])
    assert recall == 1.0 if index in ("flat", "ivf") else recall > 0.95  # ivf probes every list here
    got = np.take_along_axis(s, nbrs, axis=1)
    np.testing.assert_allclose(sims, got, atol=1e-5)


def test_nprobe_reaches_the_inverted_lists_from_the_command_line(tmp_path):
    """`faceforge curate cluster --index ivf --nprobe N`: probing every list gives the exact
    kNN graph's clusters; probing one list of many finds fewer true neighbours."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from faceforge.cli.main import app
    rng = np.random.default_rng(2)
    e = _unit(rng.normal(size=(3000, 16)))  # nlist = min(4·√3000, 3000 // 39) = 76
    few = knn(e, k=5, index="ivf", nprobe=1)[1]
    every = knn(e, k=5, index="ivf", nprobe=76)[1]
    exact = knn(e, k=5, index="flat")[1]
    assert np.array_equal(every, exact)
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(few, exact)]) < 0.9
    pq.write_table(pa.table({"path": [f"f{i}.jpg" for i in range(len(e))], "face_index": [0] * len(e),
                             "embedding": list(e)}), tmp_path / "emb.parquet")
    labels = []
    for nprobe in ("1", "76"):
        res = CliRunner().invoke(app, ["curate", "cluster", str(tmp_path / "emb.parquet"), "-o",
                                       str(tmp_path / f"out{nprobe}"), "--index", "ivf", "--nprobe", nprobe,
                                       "--cutoff", "0.7", "--json"])
        assert res.exit_code == 0, res.output
        labels.append(pq.read_table(tmp_path / f"out{nprobe}" / "clusters.parquet").column("cluster").to_numpy())
    assert np.array_equal(labels[1], cluster_embeddings(e, "leiden", 0.7, index="flat"))
    assert not np.array_equal(labels[0], labels[1])

def test_knn_with_exact_duplicates_drops_one_copy():
    e = _unit(np.array([[1, 0], [1, 0], [0, 1], [0.1, 1]], float))
    sims, nbrs = knn(e, k=2, index="flat")
    assert sims.shape == (4, 2) and (sims[:2, 0] > 0.999).all()
    assert set(nbrs[0]) == {1, 3} or set(nbrs[0]) == {1, 2}


def test_graph_edges_by_hand():
    sims = np.array([[0.9, 0.2], [0.9, 0.6], [0.6, 0.1]], np.float32)
    nbrs = np.array([[1, 2], [0, 2], [1, 0]])
    src, dst, w = graph_edges(sims, nbrs, cutoff=0.5)
    assert sorted(zip(src.tolist(), dst.tolist())) == [(0, 1), (1, 2)]  # 0–1 found twice, kept once
    assert dict(zip(zip(src.tolist(), dst.tolist()), w.round(3).tolist())) == {(0, 1): 0.9, (1, 2): 0.6}


@pytest.mark.parametrize("method", GRAPH_METHODS)
def test_two_cliques_and_an_isolated_node(method):
    # nodes 0..3 a clique, 4..6 a clique, 7 alone
    edges = [(i, j) for i in range(4) for j in range(i + 1, 4)] + [(4, 5), (4, 6), (5, 6)]
    src, dst = map(np.array, zip(*edges))
    labels = graph_communities(8, src, dst, np.ones(len(src)), method=method)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, -1]


@pytest.mark.parametrize("method", GRAPH_METHODS)
def test_no_edges_means_all_unclustered(method):
    assert graph_communities(3, np.zeros(0, int), np.zeros(0, int), np.zeros(0), method).tolist() == [-1, -1, -1]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_recovers_separable_clusters(method):
    e, y, _ = _blobs()
    labels = cluster_embeddings(e, method=method, cutoff=0.8, k=8)
    assert pairwise_prf(y, labels)["f"] == 1.0, labels
    assert labels.min() == 0 and (np.bincount(labels) == [12, 9, 7, 5]).all()  # numbered by size


def test_leiden_splits_a_chain_that_components_merge():
    """Two clusters joined by one bridge edge: connected components merge them, Leiden does not."""
    e, y, _ = _blobs(n_per=(10, 10))
    sims, nbrs = knn(e, k=5)
    src, dst, w = graph_edges(sims, nbrs, cutoff=0.8)
    src, dst, w = np.append(src, 0), np.append(dst, 10), np.append(w, 0.81)
    merged = graph_communities(20, src, dst, w, "components")
    assert len(set(merged.tolist())) == 1
    assert pairwise_prf(y, graph_communities(20, src, dst, w, "leiden"))["f"] == 1.0


def test_tiny_inputs_and_errors():
    assert cluster_embeddings(np.zeros((0, 4), np.float32)).shape == (0,)
    assert cluster_embeddings(np.ones((1, 4), np.float32)).tolist() == [-1]
    with pytest.raises(FaceForgeError, match="unknown clustering method"):
        cluster_embeddings(np.ones((3, 4)), method="kmeans")
    with pytest.raises(FaceForgeError, match="unknown index"):
        knn(np.ones((3, 4)), index="lsh")
    with pytest.raises(FaceForgeError):
        cluster_embeddings(np.array([[1.0, np.nan], [0, 1]]))


def test_weighted_vote_by_hand():
    votes = np.array([[3, 1, 1], [2, 2, 5], [4, 4, 4], [0, 1, 1]])
    w = np.array([[0.9, 0.6, 0.5], [0.0, 0.0, 0.0], [0.7, 0.0, 0.1], [0.8, 0.4, 0.4]])
    assert _weighted_vote(votes, w).tolist() == [1, -1, 4, 0]  # 1.1 > 0.9; none; only 4; tie → smaller


def test_assign_new_joins_existing_and_opens_new_clusters():
    e, y, centres = _blobs(n_per=(12, 9, 7, 5, 6), seed=3)
    old, new = np.arange(len(e)) < 33, np.arange(len(e)) >= 33  # the last blob (6 faces) is unseen
    base = cluster_embeddings(e[old], cutoff=0.8)
    rng = np.random.default_rng(9)
    joiners = _unit(centres[:2] + 0.15 / np.sqrt(32) * rng.normal(size=(2, 32)))
    lone = _unit(rng.normal(size=(1, 32)))
    a = assign_new(e[old], base, np.concatenate([joiners, e[new], lone]), cutoff=0.8)
    assert a.labels[0] == base[0] and a.labels[1] == base[12]           # join blobs 0 and 1
    assert a.first_new_label == base.max() + 1
    assert (a.labels[2:8] == a.first_new_label).all()                   # the unseen blob opens a cluster
    assert a.labels[8] == -1 and a.best_similarity[8] < 0.8             # nobody near the lone face
    with pytest.raises(FaceForgeError, match="-d"):
        assign_new(e[old], base, np.ones((2, 8)))


def test_real_faces_cluster_by_person():
    """Eight photos each of four LFW people (dlib-r29 at its verification threshold)."""
    from faceforge.pipeline import FacePipeline
    from tests.conftest import LFW, need
    people = ("George_W_Bush", "Serena_Williams", "Colin_Powell", "Jiang_Zemin")
    files = [p for n in people for p in sorted(need(LFW / "images" / n).glob("*.jpg"))[:8]]
    pipe = FacePipeline(embedder="dlib-r29", device="cpu")
    e = np.stack([pipe.embed_file(p, select="central")[1][0] for p in files])
    y = np.repeat(np.arange(4), 8)
    for method in ("leiden", "infomap", "agglomerative"):
        labels = cluster_embeddings(e, method=method, cutoff=pipe.embedder.threshold, k=7)
        assert pairwise_prf(y, labels)["precision"] == 1.0, (method, labels)
        assert pairwise_prf(y, labels)["recall"] > 0.6, (method, labels)
    assert set(BASELINES) < set(METHODS)
