"""Each optional extra, made unimportable in a subprocess as if it were not installed: the rest
of faceforge still imports and works, the feature that needs it raises MissingDependencyError
naming the pip extra, and its CLI command exits 2 with that message instead of a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from ..conftest import DATA, need

# Runs first in every subprocess. Raising from find_spec is what the import system does for a
# package that is absent, for `import x`, `from x import y` and importlib alike.
NOT_INSTALLED = '''
import importlib, os, sys

BLOCKED = set(os.environ["FACEFORGE_TEST_NOT_INSTALLED"].split(","))


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
for name in BLOCKED:  # a blocker that blocks nothing would let every check below pass vacuously
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"{name} is still importable")
'''

MISSING = '''
import numpy as np

import faceforge
from faceforge.core.errors import MissingDependencyError


def missing(extra, call, *args, **kw):
    """The message of the MissingDependencyError that call raises; it must name the extra."""
    try:
        call(*args, **kw)
    except MissingDependencyError as exc:
        assert exc.extra == extra and f"pip install 'faceforge[{extra}]'" in str(exc), str(exc)
        return str(exc)
    raise AssertionError(f"{call} raised no MissingDependencyError")
'''

CLI = "from faceforge.cli.main import app\napp(sys.argv[1:], prog_name='faceforge')\n"


def without(blocked: str, code: str, *args: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where the comma-separated packages are missing."""
    env = {**os.environ, "FACEFORGE_TEST_NOT_INSTALLED": blocked, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", NOT_INSTALLED + code, *args], env=env, capture_output=True,
                          text=True, timeout=600)


def check_api(blocked: str, code: str, **values: object) -> None:
    """Run the checks in `code` (with `values` bound to their names) without `blocked`."""
    bound = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    r = without(blocked, MISSING + bound + textwrap.dedent(code))
    assert r.returncode == 0, r.stderr


def cli_error(blocked: str, *args: str) -> str:
    """The error of a command that needs a missing package: exit 2, no traceback, JSON message."""
    r = without(blocked, CLI, *args, "--json")
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode == 2, r.stdout + r.stderr
    return json.loads(r.stdout)["error"]


@pytest.fixture(scope="module")
def people() -> Path:
    return need(DATA / "small_ids" / "train")


@pytest.fixture(scope="module")
def embeddings(people, tmp_path_factory) -> str:
    """SFace embeddings of the small real identity set (made with every extra installed)."""
    from faceforge.pipeline import FacePipeline, embed_folder
    out = tmp_path_factory.mktemp("emb") / "people.parquet"
    embed_folder(FacePipeline(detector="yunet", embedder="sface", device="cpu"), people, out, "largest",
                 show_progress=False)
    return str(out)


def train_config(folder: Path, people: Path, backbone: str = "mbf", tensorboard: bool = True) -> str:
    cfg = {"model": {"backbone": backbone, "num_features": 64}, "head": {"type": "arcface"},
           "data": {"root": str(people)},
           "train": {"output": str(folder / "run"), "epochs": 1, "batch_size": 2, "device": "cpu",
                     "tensorboard": tensorboard}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_search_without_milvus(tmp_path):
    check_api("pymilvus,milvus_lite", """
        import os
        from faceforge.search import Records, open_gallery
        msg = missing("search", open_gallery, lite)
        assert "Milvus Lite" in msg and not os.path.exists(lite), msg
        assert "pymilvus" in missing("search", open_gallery, "http://127.0.0.1:19530")
        with open_gallery("faiss:" + folder) as g:  # FAISS galleries need no Milvus
            g.add(Records(["a"], ["a.jpg"], ["k"], [0], np.eye(1, 8)), "m")
            assert g.search(np.eye(1, 8))[0][0].identity == "a"
        """, lite=str(tmp_path / "g.db"), folder=str(tmp_path / "f"))


@pytest.mark.parametrize("blocked", ["pymilvus", "milvus_lite"])
def test_cli_gallery_enrol_without_milvus(blocked, people, tmp_path):
    error = cli_error(blocked, "gallery", "enrol", str(people), "--gallery", str(tmp_path / "g.db"))
    assert f"needs {blocked}: pip install 'faceforge[search]'" in error
    assert not (tmp_path / "g.db").exists()


def test_search_and_clustering_without_faiss(embeddings, tmp_path):
    check_api("faiss", """
        import os
        from faceforge.curate.cluster import cluster_embeddings, knn
        from faceforge.io.embeddings import embedding_matrix, read_embeddings
        from faceforge.search import open_gallery
        assert "faiss" in missing("search", open_gallery, "faiss:" + folder)
        assert not os.path.exists(folder)
        e = embedding_matrix(read_embeddings(embeddings))
        missing("curate", knn, e)
        for method in ("leiden", "infomap", "components"):  # all on the kNN graph
            missing("curate", cluster_embeddings, e, method)
        assert len(cluster_embeddings(e, "dbscan")) == len(e)  # a baseline, no graph
        """, embeddings=embeddings, folder=str(tmp_path / "f"))


def test_cli_without_faiss(people, embeddings, tmp_path):
    error = cli_error("faiss", "gallery", "enrol", str(people), "--gallery", f"faiss:{tmp_path / 'f'}")
    assert "FAISS gallery" in error and "pip install 'faceforge[search]'" in error
    error = cli_error("faiss", "curate", "cluster", embeddings, "-o", str(tmp_path / "c"), "--method", "components",
                      "--cutoff", "0.5")
    assert "needs faiss: pip install 'faceforge[curate]'" in error


def test_curate_without_graph_and_sklearn_packages(embeddings):
    check_api("igraph,infomap,sklearn", """
        from faceforge.curate.cluster import cluster_embeddings
        from faceforge.curate.dbscan import dbscan_labels
        from faceforge.curate.graph_filter import communities
        from faceforge.curate.metrics import nmi, pairwise_prf
        from faceforge.io.embeddings import embedding_matrix, read_embeddings
        table = read_embeddings(embeddings)
        e, ids = embedding_matrix(table), table.column("identity").to_pylist()
        assert "igraph" in missing("curate", cluster_embeddings, e, "leiden")
        assert "infomap" in missing("curate", cluster_embeddings, e, "infomap")
        for method in ("hdbscan", "agglomerative"):
            assert "sklearn" in missing("curate", cluster_embeddings, e, method)
        missing("curate", dbscan_labels, e)
        labels = cluster_embeddings(e, "components", cutoff=0.5)  # FAISS and SciPy only
        missing("curate", nmi, ids, labels)
        assert 0 <= pairwise_prf(ids, labels)["f"] <= 1
        assert len(communities(e @ e.T > 0.5, "label_propagation")) == len(e)  # networkx, from the core
        """, embeddings=embeddings)


@pytest.mark.parametrize("blocked, method", [("igraph", "leiden"), ("sklearn", "hdbscan")])
def test_cli_curate_cluster_without_its_method(blocked, method, embeddings, tmp_path):
    error = cli_error(blocked, "curate", "cluster", embeddings, "-o", str(tmp_path / "c"), "--method", method,
                      "--cutoff", "0.5")
    assert f"needs {blocked}: pip install 'faceforge[curate]'" in error


def test_quality_without_catboost(embeddings, tmp_path):
    check_api("catboost", """
        from faceforge.io.embeddings import read_embeddings
        from faceforge.quality import QualityEstimator, train_estimator
        from faceforge.quality.baselines import face_size
        missing("quality", QualityEstimator.load, estimator)
        missing("quality", train_estimator, np.zeros((30, 2)), np.zeros(30), ["a"] * 30, backbone="x",
                layer_names=["bn"])
        landmarks = np.asarray(read_embeddings(embeddings).column("landmarks").to_pylist())
        assert (face_size(landmarks.reshape(-1, 5, 2)) > 0).all()  # the baselines need no CatBoost
        """, embeddings=embeddings, estimator=str(tmp_path / "est"))


def test_cli_quality_train_without_catboost(people, tmp_path):
    error = cli_error("catboost", "quality", "train", str(people), "-o", str(tmp_path / "est"))
    assert "the quality estimator needs catboost: pip install 'faceforge[quality]'" in error


def test_train_without_tensorboard(people, tmp_path):
    on = train_config(tmp_path / "on", people)
    check_api("tensorboard", """
        import yaml
        from faceforge.train.config import build_trainer
        missing("train", build_trainer, yaml.safe_load(open(on)))
        assert build_trainer(yaml.safe_load(open(off))).steps_per_epoch >= 1
        """, on=on, off=train_config(tmp_path / "off", people, tensorboard=False))
    error = cli_error("tensorboard", "train", on)
    assert "needs tensorboard: pip install 'faceforge[train]'" in error and "train.tensorboard" in error
    assert not (tmp_path / "on" / "run").exists()


@pytest.mark.parametrize("blocked", ["timm", "torchvision"])
def test_timm_backbone_without_timm_or_torchvision(blocked, people, tmp_path):
    check_api(blocked, """
        from faceforge.models.backbones import create_backbone
        assert f"needs {package}:" in missing("timm", create_backbone, "timm:resnet18")
        assert create_backbone("mbf", num_features=64).num_features == 64
        """, package=blocked)
    cfg = train_config(tmp_path, people, "timm:resnet18", tensorboard=False)
    assert f"needs {blocked}: pip install 'faceforge[timm]'" in cli_error(blocked, "train", cfg)


def test_detectors_and_embedders_without_dlib_and_onnxruntime(tmp_path):
    check_api("dlib,onnxruntime", """
        assert "dlib" in missing("dlib", faceforge.create_detector, "dlib")
        assert "onnxruntime" in missing("onnx", faceforge.create_embedder, "onnx:" + model)
        assert faceforge.create_detector("yunet").name == "yunet"
        assert faceforge.create_embedder("sface").dim == 128
        assert faceforge.create_embedder("sface-int8").dim == 128
        """, model=str(tmp_path / "m.onnx"))


@pytest.mark.parametrize("blocked, args, extra", [
    ("dlib", ["detect", "{img}", "-d", "dlib"], "dlib"),
    ("onnxruntime", ["verify", "{img}", "{img}", "-m", "onnx:{tmp}/m.onnx"], "onnx"),
])
def test_cli_detect_and_verify_without_their_extra(blocked, args, extra, tmp_path):
    img = str(need(DATA / "small_ids" / "test" / "obama1.jpg"))
    error = cli_error(blocked, *(a.format(img=img, tmp=tmp_path) for a in args))
    assert f"needs {blocked}: pip install 'faceforge[{extra}]'" in error


@pytest.mark.parametrize("blocked", ["fastapi", "python_multipart"])
def test_serve_without_its_extra(blocked):
    check_api(blocked, """
        import importlib
        import faceforge.cli.main  # every command is still registered
        msg = missing("serve", importlib.import_module, "faceforge.serve")
        assert f"needs {package}:" in msg, msg
        """, package=blocked)


@pytest.mark.parametrize("blocked", ["fastapi", "uvicorn"])
def test_cli_serve_without_its_extra(blocked, tmp_path):
    r = without(blocked, CLI, "serve", "--gallery", f"faiss:{tmp_path / 'f'}")  # serve has no --json
    assert "Traceback" not in r.stderr and r.returncode == 2, r.stderr
    assert f"needs {blocked}: pip install" in r.stderr


def test_cli_error_line_names_the_extra(people, tmp_path):
    r = without("pymilvus", CLI, "gallery", "enrol", str(people), "--gallery", str(tmp_path / "g.db"))
    assert r.returncode == 2 and "pip install 'faceforge[search]'" in r.stderr, r.stderr
