"""The training tests' data: real LFW faces, detected and aligned once per session."""
from pathlib import Path

import pytest
import torch
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


