"""The training tests' data (real LFW faces, detected and aligned once per session) and the
kill -9 / resume check they share."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from faceforge.io import load_image
from faceforge.vision.align import norm_crop
from faceforge.vision.detectors import create_detector

from ..conftest import LFW, need


def _align(root: Path, people: int, per_person: int) -> Path:
    """`people` LFW identities (the first with ≥ 4 images) × `per_person` images, detected and
    aligned to 112×112 ArcFace crops."""
    det = create_detector("yunet", largest_only=True)
    found = sorted(p for p in need(LFW / "images").iterdir() if p.is_dir() and len(list(p.iterdir())) >= 4)
    for person in found[:people]:
        (root / person.name).mkdir()
        for f in sorted(person.iterdir())[:per_person]:
            img = load_image(f)
            face = det.detect(img)[0]
            Image.fromarray(norm_crop(img, face.landmarks)).save(root / person.name / (f.stem + ".png"))
    return root


@pytest.fixture(scope="session")
def aligned(tmp_path_factory) -> Path:
    """8 identities × 4 images."""
    return _align(tmp_path_factory.mktemp("aligned"), 8, 4)


@pytest.fixture(scope="session")
def aligned_many(tmp_path_factory) -> Path:
    """20 identities × 2 images: more classes than a small batch holds, so Partial FC samples."""
    return _align(tmp_path_factory.mktemp("aligned_many"), 20, 2)


def config(aligned: Path, out: Path, **train) -> dict:
    return {"model": {"backbone": "mbf", "num_features": 64},
            "head": {"type": "arcface", "s": 32, "m": 0.3},
            "data": {"root": str(aligned), "augment": "degrade"},
            "train": {"output": str(out), "epochs": 2, "batch_size": 8, "lr": 0.05, "warmup_epochs": 0.5,
                      "checkpoint_every": 1, "tensorboard": False, "device": "cpu", **train}}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)




def _train(cfg_path: Path) -> list[str]:
    return [sys.executable, "-m", "faceforge.cli.main", "train", str(cfg_path), "--json"]


def kill_9_then_resume(ref: dict, run: dict, tmp_path: Path, total_steps: int,
                       parts: tuple[str, ...] = ("backbone", "head")) -> None:
    """Train `ref` to the end; start `run` (the same recipe, another output), kill -9 it after
    a few steps' checkpoints, rerun it: it must resume and end with `ref`'s state `parts`."""
    ref_cfg, cfg = tmp_path / "ref.yaml", tmp_path / "run.yaml"
    ref_cfg.write_text(yaml.safe_dump(ref))
    cfg.write_text(yaml.safe_dump(run))
    subprocess.run(_train(ref_cfg), check=True, capture_output=True)
    proc = subprocess.Popen(_train(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = Path(run["train"]["output"]) / "last.pt"
    deadline, seen = time.time() + 180, 0
    while time.time() < deadline and seen < 4:  # let a few steps' checkpoints land
        if last.exists() and last.stat().st_size:
            seen = max(seen, torch.load(last, weights_only=True)["step"])
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < torch.load(last, weights_only=True)["step"] < total_steps, "the run must be killed mid-training"
    res = json.loads(subprocess.run(_train(cfg), check=True, capture_output=True, text=True).stdout)
    assert res["resumed"] and res["steps"] == total_steps
    a = torch.load(Path(ref["train"]["output"]) / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    for part in parts:
        assert same_weights(a[part], b[part]), part
