"""The one registry: names, prefixes, clear errors, and components from outside the package."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from faceforge.core.errors import FaceForgeError
from faceforge.core.registry import Registry
from faceforge.models.backbones import BACKBONES
from faceforge.models.embedders import EMBEDDERS
from faceforge.models.heads.factory import HEADS
from faceforge.search.gallery import GALLERIES
from faceforge.vision.detectors import DETECTORS

from ..conftest import lfw_image


def test_register_create_and_unknown_names():
    reg: Registry = Registry("widget")

    @reg.register("b")
    def make_b(x: int = 1) -> tuple:
        return ("b", x)

    reg.register("a", lambda: "a")
    reg.register_prefix("file:", lambda rest, **kw: ("file", rest), "file:<path>")
    assert reg.names() == ["a", "b"] and reg.choices() == ["a", "b", "file:<path>"]
    assert reg.create("b", x=3) == ("b", 3) and reg.create("file:/x") == ("file", "/x")
    assert "a" in reg and "c" not in reg
    with pytest.raises(FaceForgeError, match=r"unknown widget 'c'; available: a, b, file:<path>"):
        reg.create("c")
    with pytest.raises(FaceForgeError, match="already registered"):
        reg.register("a", lambda: "other")


def test_every_component_kind_uses_it():
    assert {"r50", "mbf", "dlib-r29"} <= set(BACKBONES.names())
    assert {"arcface", "cosface", "softmax", "triplet"} <= set(HEADS.names())
    assert {"sface", "dlib-r29", "sface+dlib-r29"} <= set(EMBEDDERS.names())
    assert {"yunet", "mtcnn", "dlib"} <= set(DETECTORS.names())
    assert {"faiss", "milvus"} <= set(GALLERIES.names())
    assert DETECTORS.get("yunet").name == "yunet" and GALLERIES.get("faiss").backend == "faiss"


PLUGIN = '''
"""A component package of its own: a toy backbone and a toy detector."""
import numpy as np
import torch
from torch import nn

from faceforge.models.backbones import register_backbone
from faceforge.vision.detectors import Detector, register_detector
from faceforge.vision.face import Face


@register_backbone("toy-net")
def toy_net(num_features: int = 16):
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_features))


@register_detector("toy-centre")
class CentreDetector(Detector):
    """The face of a pre-cropped portrait is in the middle: a box over the central half and
    the five points where LFW's aligned faces have them."""

    def _detect(self, image):
        h, w = image.shape[:2]
        pts = np.array([[0.42, 0.45], [0.58, 0.45], [0.5, 0.54], [0.44, 0.62], [0.56, 0.62]], np.float32)
        box = np.array([w * 0.25, h * 0.25, w * 0.75, h * 0.75], np.float32)
        return [Face(box, 0.99, pts * np.array([w, h], np.float32), self.name)]
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """An installed distribution in all but name: a module and a dist-info folder declaring it
    under the faceforge.plugins entry points."""
    root = tmp_path_factory.mktemp("site")
    (root / "toyplugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "toyplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[faceforge.plugins]\ntoy = toyplugin\n")
    return root


def _cli(plugin_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "faceforge", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_outside_components_work_through_the_cli(plugin_path, tmp_path):
    res = _cli(plugin_path, "models", "--json")
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    assert "toy-centre" in listed["detectors"] and "toy-net" in listed["backbones"]

    img = lfw_image("Colin_Powell", 1)
    res = _cli(plugin_path, "detect", str(img), "--detector", "toy-centre", "--json")
    assert res.returncode == 0, res.stderr
    faces = json.loads(res.stdout)[0]["faces"]
    assert len(faces) == 1 and faces[0]["detector"] == "toy-centre"

    # the toy detector feeds the real pipeline: prepare aligns LFW photos with it, and the toy
    # backbone trains on them for one epoch from a config that names it
    people = sorted(p for p in img.parents[1].iterdir() if p.is_dir() and len(list(p.iterdir())) >= 3)[:4]
    raw = tmp_path / "raw"
    for p in people:
        (raw / p.name).mkdir(parents=True)
        for f in sorted(p.iterdir())[:3]:
            (raw / p.name / f.name).symlink_to(f)
    res = _cli(plugin_path, "prepare", str(raw), str(tmp_path / "aligned"), "--detector", "toy-centre", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["written"] == 12
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(json.dumps({"model": {"backbone": "toy-net", "num_features": 16},
                               "head": {"type": "arcface", "s": 16, "m": 0.2},
                               "data": {"root": str(tmp_path / "aligned"), "augment": None},
                               "train": {"output": str(tmp_path / "run"), "epochs": 1, "batch_size": 4,
                                         "device": "cpu", "tensorboard": False}}))
    res = _cli(plugin_path, "train", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["steps"] == 3 and (tmp_path / "run" / "last.pt").is_file()

    res = _cli(plugin_path, "detect", str(img), "--detector", "toy-nope", "--json")
    assert res.returncode == 2 and "toy-centre" in json.loads(res.stdout)["error"]
