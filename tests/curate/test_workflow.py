"""`faceforge curate filter|cluster` as users run them, on real LFW faces with planted
intruders; the review report opened in headless Chromium."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.curate.metrics import clustering_report
from tests.conftest import LFW, headless_chromium, need

runner = CliRunner()
PEOPLE = ["Colin_Powell", "Serena_Williams", "Jiang_Zemin", "Gray_Davis"]
INTRUDERS = ["Tony_Blair/Tony_Blair_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0001.jpg"]  # filed under Colin_Powell


def run(*args: str) -> dict:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def fail(*args: str) -> str:
    res = runner.invoke(app, list(args) + ["--json"])
    assert res.exit_code == 2, res.output
    return json.loads(res.stdout)["error"]


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("curate")
    faces = base / "faces"
    for name in PEOPLE:
        (faces / name).mkdir(parents=True)
        for f in sorted(need(LFW / "images" / name).glob("*.jpg"))[:7]:
            shutil.copy(f, faces / name / f.name)
    for rel in INTRUDERS:
        shutil.copy(need(LFW / "images" / rel), faces / "Colin_Powell" / Path(rel).name)
    emb = base / "emb.parquet"
    run("embed", str(faces), "-o", str(emb), "-m", "dlib-r29", "--select", "central", "--json")
    est = base / "qaa"
    run("quality", "train", str(faces), "-o", str(est), "--iterations", "60", "--val-fraction", "0.25", "--json")
    scored = base / "scored.parquet"
    run("quality", "score", str(emb), "-o", str(scored), "-e", str(est.with_suffix(".cbm")), "--json")
    return {"faces": faces, "emb": emb, "scored": scored, "base": base}


def test_filter_with_quality_flags_the_intruders_and_touches_nothing(data, tmp_path):
    before = tree_hashes(data["faces"]), hashlib.sha256(data["scored"].read_bytes()).hexdigest()
    out = tmp_path / "clean"
    s = run("curate", "filter", str(data["scored"]), "-o", str(out), "--quality-column", "quality_raw",
            "--links", "--report", "--json")
    noise = (out / "noise.txt").read_text().split()
    assert {Path(p).name for p in noise} >= {Path(r).name for r in INTRUDERS}
    assert s["faces"] == 30 and s["kept"] + s["noise"] == 30 and s["noise"] <= 6
    assert len((out / "clean.txt").read_text().split()) == s["kept"]
    table = pq.read_table(out / "communities.parquet")
    assert set(table.column("identity").to_pylist()) == set(PEOPLE)
    assert table.column("quality").to_numpy().max() <= 1.0
    per = json.loads((out / "summary.json").read_text())["per_identity"]
    assert set(per) == set(PEOPLE) and per["Colin_Powell"]["images"] == 9
    links = sorted((out / "links" / "Colin_Powell").iterdir())
    assert links and all(p.is_symlink() and p.resolve().is_file() for p in links)
    assert not {p.name for p in links} & {Path(r).name for r in INTRUDERS}
    assert (tree_hashes(data["faces"]), hashlib.sha256(data["scored"].read_bytes()).hexdigest()) == before
    check_report_in_chromium(Path(s["report"]), tmp_path / "report.png")


@pytest.mark.parametrize("method", ["label_propagation", "leiden", "dbscan", "elbow-dbscan"])
def test_filter_methods_without_quality(data, tmp_path, method):
    s = run("curate", "filter", str(data["emb"]), "-o", str(tmp_path / method), "--method", method, "--json")
    noise = {Path(p).name for p in (tmp_path / method / "noise.txt").read_text().split()}
    assert s["threshold"] == (0.925 if method in ("label_propagation", "leiden") else None)  # dlib-r29's
    if method != "dbscan":  # eps 0.3 is too loose for dlib-r29, whose strangers sit at cosine ≈ 0.8
        assert noise >= {Path(r).name for r in INTRUDERS}, (method, noise)


def test_filter_community_rule_three_outcomes(data, tmp_path):
    """--rule community on the same files: the intruders are still other people; whatever
    else leaves the main community is either kept as a different look (looks.txt, the report's
    middle group) or flagged, and the three outputs agree."""
    out = tmp_path / "community"
    ref = run("curate", "filter", str(data["emb"]), "-o", str(tmp_path / "ref"), "--json")
    s = run("curate", "filter", str(data["emb"]), "-o", str(out), "--rule", "community", "--report", "--json")
    assert s["rule"] == "community" and s["same_threshold"] == 0.905  # dlib-r29's verification threshold
    noise = {Path(p).name for p in (out / "noise.txt").read_text().split()}
    looks = (out / "looks.txt").read_text().split()
    assert noise >= {Path(r).name for r in INTRUDERS} and s["noise"] <= ref["noise"]
    assert len(looks) == s["different_look"] == ref["noise"] - s["noise"]
    table = pq.read_table(out / "communities.parquet").to_pydict()
    outcome = dict(zip(table["path"], table["outcome"]))
    assert {outcome[p] for p in looks} <= {"different look"}
    assert all(outcome[p] == "other person" for p in outcome if Path(p).name in noise)
    scores = [g for g, o in zip(table["group_score"], table["outcome"]) if o == "other person"]
    assert scores and all(g < 0.905 for g in scores)  # flagged: its group's template did not match
    html = Path(s["report"]).read_text()
    assert "Flagged: other person" in html and "template score" in html


def test_filter_errors(data, tmp_path):
    assert "not in [0, 1]" in fail("curate", "filter", str(data["scored"]), "-o", str(tmp_path / "a"),
                                   "--quality-column", "quality")
    assert "no 'nope' column" in fail("curate", "filter", str(data["scored"]), "-o", str(tmp_path / "b"),
                                      "--quality-column", "nope")
    assert "unknown filter method" in fail("curate", "filter", str(data["emb"]), "-o", str(tmp_path / "c"),
                                           "--method", "kmeans")
    assert "would hold the input" in fail("curate", "filter", str(data["emb"]), "-o", str(data["base"]))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    assert str(bad) in fail("curate", "filter", str(bad), "-o", str(tmp_path / "d"))


def test_cluster_then_add_new_faces(data, tmp_path):
    out = tmp_path / "clusters"
    assert run("curate", "cluster", str(data["emb"]), "-o", str(tmp_path / "default"), "--json")["cutoff"] == 0.95
    s = run("curate", "cluster", str(data["emb"]), "-o", str(out), "--k", "8", "--cutoff", "0.92", "--json")
    assert s["faces"] == 30 and "scored_against_identity" in s
    t = pq.read_table(out / "clusters.parquet")
    person = [Path(p).name.rsplit("_", 1)[0] for p in t.column("path").to_pylist()]  # the folder lies twice
    cluster = t.column("cluster").to_numpy()
    own = {name: set(cluster[[p == name for p in person]].tolist()) for name in PEOPLE}
    assert all(len(c) == 1 and -1 not in c for c in own.values()), own  # each person's photos together …
    assert len(set.union(*own.values())) == 4                           # … and apart from the others
    assert clustering_report(person, cluster)["bcubed"]["f"] > 0.9
    lists = sorted((out / "clusters").glob("*.txt"))
    assert len(lists) == s["clusters"] and (out / "clusters.parquet").is_file()
    assert sum(len(p.read_text().split()) for p in lists) + s["unclustered"] == 30
    # new photos: more of an existing person and two of someone new
    new = tmp_path / "new"
    (new / "Serena_Williams").mkdir(parents=True)
    (new / "Vladimir_Putin").mkdir(parents=True)
    for f in sorted(need(LFW / "images" / "Serena_Williams").glob("*.jpg"))[7:10]:
        shutil.copy(f, new / "Serena_Williams")
    for f in sorted(need(LFW / "images" / "Vladimir_Putin").glob("*.jpg"))[:3]:
        shutil.copy(f, new / "Vladimir_Putin")
    run("embed", str(new), "-o", str(tmp_path / "new.parquet"), "-m", "dlib-r29", "--select", "central", "--json")
    a = run("curate", "cluster", str(tmp_path / "new.parquet"), "-o", str(tmp_path / "more"),
            "--add-to", str(out / "clusters.parquet"), "--cutoff", "0.92", "--json")
    assert a["faces"] == 36 and a["new_faces"] == 6
    assert a["joined_existing"] >= 2 and a["new_clusters"] == 1, a
    t = pq.read_table(tmp_path / "more" / "clusters.parquet").to_pandas()
    old = t.iloc[:30]
    np.testing.assert_array_equal(old["cluster"], pq.read_table(out / "clusters.parquet").column("cluster"))
    serena_old = set(old[old.identity == "Serena_Williams"].cluster) - {-1}
    serena_new = set(t.iloc[30:][t.iloc[30:].identity == "Serena_Williams"].cluster) - {-1}
    assert serena_new and serena_new <= serena_old


@pytest.mark.parametrize("method", ["infomap", "hdbscan", "agglomerative"])
def test_cluster_methods(data, tmp_path, method):
    s = run("curate", "cluster", str(data["emb"]), "-o", str(tmp_path / method), "--method", method,
            "--cutoff", "0.92", "--json")
    assert s["faces"] == 30 and s["scored_against_identity"]["pairwise"]["f"] > 0.5, s


def check_report_in_chromium(index: Path, screenshot: Path) -> None:
    """Open the report in headless Chromium: the page loads, every image resolves, and a
    screenshot is written."""
    html = index.read_text()
    assert html.count('class="grid noise"') >= 1 and "t-SNE" in html and "quality 0." in html
    with headless_chromium() as browser:
        browser.get(index.resolve().as_uri())
        assert browser.title == "FaceForge curation review"
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        assert len(images) >= 30 + 3  # every face thumbnail and the t-SNE plots
        assert all(ok for _, ok in images), [src for src, ok in images if not ok]
        red = browser.execute_script(
            "return getComputedStyle(document.querySelector('.grid.noise img')).borderTopColor")
        assert red == "rgb(221, 0, 0)"
        assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000


def test_models_without_measured_settings_ask_for_them(data, tmp_path):
    t = pq.read_table(data["emb"])
    other = t.set_column(t.column_names.index("model"), "model", pa.array(["onnx:/models/x.onnx"] * t.num_rows))
    path = tmp_path / "other.parquet"
    pq.write_table(other, path)
    assert "give --cutoff" in fail("curate", "cluster", str(path), "-o", str(tmp_path / "c"))
    assert "give --threshold" in fail("curate", "filter", str(path), "-o", str(tmp_path / "f"))
    s = run("curate", "filter", str(path), "-o", str(tmp_path / "g"), "--threshold", "0.9", "--json")
    assert s["threshold"] == 0.9 and s["margin"] == 0.1  # nothing known about the model: the reference margin
