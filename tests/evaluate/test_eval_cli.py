"""`faceforge eval verify|ident|topk|erc|ijbc|compare` on real LFW embeddings: the CLI's
numbers equal the API's on the same inputs, and its files are written."""
import json

import pytest
from typer.testing import CliRunner

from faceforge.cli.main import app
from faceforge.evaluate.identification import open_set_identification, topk_decisions
from faceforge.evaluate.inputs import load_embedding_set
from faceforge.evaluate.verification import all_pairs_scores, tpr_at_fpr
from faceforge.pipeline import FacePipeline, embed_folder

runner = CliRunner()
IDS = ["Ariel_Sharon", "Colin_Powell", "Gerhard_Schroeder", "Hugo_Chavez", "Jean_Chretien", "Tony_Blair"]


def run(*args: str) -> dict:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def sets(lfw_root, tmp_path_factory):
    """Gallery: 2 images of the first 4 identities; probes: 3 more of all 6 (2 non-mated)."""
    root = tmp_path_factory.mktemp("evalcli")
    for i, name in enumerate(IDS):
        files = sorted((lfw_root / "images" / name).iterdir())
        for part, chosen in (("gallery", files[:2] if i < 4 else []), ("probes", files[2:5])):
            for f in chosen:
                (root / part / name).mkdir(parents=True, exist_ok=True)
                (root / part / name / f.name).symlink_to(f)
    pipe = FacePipeline("yunet", "sface")
    for part in ("gallery", "probes"):
        embed_folder(pipe, root / part, root / f"{part}.parquet", select="central", show_progress=False)
    return root


def test_verify_all_pairs_and_pair_list(sets, tmp_path):
    emb = load_embedding_set(sets / "probes.parquet")
    res = run("eval", "verify", sets / "probes.parquet", "--fpr", "0.005", "--fpr", "0.1", "--out", tmp_path / "v",
              "--json")
    s, same = all_pairs_scores(emb.vectors, emb.identities)
    ref = tpr_at_fpr(s, same, (0.1,))
    assert res["pairs"] == 18 * 17 // 2 and res["positives"] == 6 * 3
    assert res["tpr_at_fpr"]["0.1"]["tpr"] == pytest.approx(ref["0.1"]["tpr"])
    assert res["tpr_at_fpr"]["0.005"]["tpr"] is None  # 135 negatives: 0.005 is not measurable → null
    for f in ("metrics.json", "tpr_at_fpr.csv", "roc.csv", "roc.png", "scores.png"):
        assert (tmp_path / "v" / f).stat().st_size > 0
    # a pair list naming images by identity/file, one of them without an embedding
    p0, p1, p2 = emb.paths[0], emb.paths[1], emb.paths[5]
    rel = lambda p: "/".join(p.split("/")[-2:])  # noqa: E731
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{rel(p0)} {rel(p1)} 1\n{rel(p0)} {rel(p2)} 0\n{rel(p1)} {rel(p2)} 0\nX/x.jpg {rel(p1)} 1\n")
    bad = runner.invoke(app, ["eval", "verify", str(sets / "probes.parquet"), "--pairs", str(pairs)])
    assert bad.exit_code == 2 and "X/x.jpg" in bad.output and "pairs.txt" in bad.output
    res = run("eval", "verify", sets / "probes.parquet", "--pairs", pairs, "--on-missing", "drop", "--fpr", "0.5",
              "--json")
    assert res["pairs"] == 3 and res["pairs_dropped_missing_image"] == 1
    assert res["tpr_at_fpr"]["0.5"]["threshold"] == pytest.approx(
        min(float(emb.vectors[0] @ emb.vectors[5]), float(emb.vectors[1] @ emb.vectors[5])), abs=1e-6)


def test_ident_open_set_and_distractors(sets, tmp_path):
    g, q = load_embedding_set(sets / "gallery.parquet"), load_embedding_set(sets / "probes.parquet")
    res = run("eval", "ident", sets / "probes.parquet", "--gallery", sets / "gallery.parquet", "--distractors",
              sets / "gallery.parquet", "--fpir", "0.2", "--fpir", "0.5", "--max-rank", "4", "--out", tmp_path, "--json")
    ref = open_set_identification(g.vectors, g.identities, q.vectors, q.identities, (0.2, 0.5), ranks=(1, 5, 10, 4))
    for key, r in ref["tpir_at_fpir"].items():
        assert res["open_set"]["tpir_at_fpir"][key] == pytest.approx(r)
    assert res["open_set"]["mated"] == 12 and res["open_set"]["non_mated"] == 6
    assert res["open_set"]["cmc"]["1"] == pytest.approx(ref["cmc"]["1"]) and len(res["open_set"]["cmc_curve"]) == 4
    assert set(res["with_distractors"]) == {"0.2", "0.5"}
    assert (tmp_path / "cmc.png").stat().st_size > 0
    assert runner.invoke(app, ["eval", "ident", str(sets / "probes.parquet")]).exit_code == 2


def test_topk_reports_the_api_decisions(sets, tmp_path):
    g, q = load_embedding_set(sets / "gallery.parquet"), load_embedding_set(sets / "probes.parquet")
    res = run("eval", "topk", sets / "probes.parquet", "--gallery", sets / "gallery.parquet", "--k", "1", "--k", "3",
              "--threshold", "0.4", "--target-precision", "0.9", "--out", tmp_path, "--json")
    for k in (1, 3):
        dec = topk_decisions(g.vectors, g.identities, q.vectors, q.identities, k)
        assert res["k"][str(k)]["at_threshold"] == dec.at(0.4)
        assert res["k"][str(k)]["at_target_precision"]["precision"] >= 0.9
    assert (tmp_path / "precision_recall.png").stat().st_size > 0


def test_erc_with_detector_score(sets, tmp_path):
    res = run("eval", "erc", sets / "probes.parquet", "--quality", "det_score", "--fmr", "0.05", "--out", tmp_path,
              "--json")
    c = res["qualities"]["det_score"]["curves"]["0.05"]
    assert len(c["fnmr"]) == len(res["qualities"]["det_score"]["fractions"]) and c["pauc_100"] is not None
    assert (tmp_path / "erc.png").stat().st_size > 0
    bad = runner.invoke(app, ["eval", "erc", str(sets / "probes.parquet"), "--quality", "nope"])
    assert bad.exit_code == 2 and "no column 'nope'" in bad.output


def test_verify_computes_embeddings_from_a_folder(sets, tmp_path):
    res = run("eval", "verify", sets / "gallery", "--out", tmp_path, "--fpr", "0.1", "--json")
    assert res["pairs"] == 8 * 7 // 2 and (tmp_path / "embeddings-gallery.parquet").is_file()


def test_compare_tables(sets, tmp_path):
    shown = runner.invoke(app, ["eval", "verify", str(sets / "probes.parquet"), "--out", str(tmp_path / "a"),
                                "--name", "sface", "--fpr", "0.1"])
    assert shown.exit_code == 0 and "TPR@0.1" in shown.output
    (tmp_path / "b.json").write_text(json.dumps({"modes": {"N0D0F0": {"tpr_at_fpr": {"0.1": {"tpr": 0.5}}}}}))
    res = run("eval", "compare", tmp_path / "a" / "metrics.json", tmp_path / "b.json", "--json")
    assert res["fprs"] == ["0.1"] and res["rows"]["b: modes/N0D0F0"]["0.1"] == 0.5
    assert "metrics: sface" in res["rows"]
    md = runner.invoke(app, ["eval", "compare", str(tmp_path / "b.json"), "--markdown"])
    assert "| modes/N0D0F0 | 50.00 |" in md.output
    (tmp_path / "c.json").write_text("{}")
    assert runner.invoke(app, ["eval", "compare", str(tmp_path / "c.json")]).exit_code == 2
