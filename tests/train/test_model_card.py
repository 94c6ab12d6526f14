"""Train briefly → export → card → embed and verify with the card's own threshold."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import faceforge

from faceforge.cli.main import app
from faceforge.core.errors import ModelLoadError
from faceforge.io.images import load_image
from faceforge.io.splits import verification_pairs, write_pairs
from faceforge.models.cards import ModelCard, card_path
from faceforge.models.embedders import create_embedder
from faceforge.train.config import build_trainer

from ..conftest import lfw_image
from .conftest import config

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(aligned, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("run")
    items = sorted(str(p.relative_to(aligned)) for p in aligned.rglob("*.png"))
    write_pairs(out / "val_pairs.txt", verification_pairs(items, 0, None))
    cfg = config(aligned, out / "run", epochs=2)
    cfg["val"] = {"pairs": str(out / "val_pairs.txt"), "root": str(aligned)}
    trainer = build_trainer(cfg)
    trainer.fit()
    return out / "run", trainer


def test_export_writes_a_card_and_the_model_loads_back(trained, aligned, tmp_path):  # noqa: F811
    run, trainer = trained
    res = runner.invoke(app, ["export", "safetensors", str(run / "last.pt"), "-o", str(tmp_path / "m.safetensors"),
                              "--json"])
    assert res.exit_code == 0, res.output
    card = ModelCard.load(card_path(tmp_path / "m.safetensors"))
    assert json.loads(res.stdout)["card"] == str(tmp_path / "m.card.json")
    assert (card.input.template, card.input.size, card.input.mean, card.input.std) == ("arcface", 112, 127.5, 127.5)
    assert card.embedding_dim == 64 and card.backbone == "mbf" and card.weights == "m.safetensors"
    # the threshold is the last epoch's validation threshold, as the history recorded it
    assert card.threshold("verify") == pytest.approx(trainer.history[-1]["val_threshold"], abs=1e-4)
    assert "validation pairs" in card.thresholds["verify"].protocol

    # the loaded embedder computes what the trained backbone computes on the same crop
    emb = create_embedder(str(tmp_path / "m.safetensors"), device="cpu")
    assert emb.name == card.name and emb.threshold == card.threshold("verify")
    x = np.stack([load_image(p) for p in sorted(aligned.rglob("*.png"))[:3]])
    with torch.no_grad():
        ref = trainer.backbone.eval()((torch.from_numpy(x).permute(0, 3, 1, 2).float() - 127.5) / 127.5).numpy()
    assert np.allclose(emb.embed_crops(x), ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)

    # the card alone finds its weights; verify runs with the card's threshold through the CLI
    a, b = lfw_image("Colin_Powell", 1), lfw_image("Colin_Powell", 2)
    res = runner.invoke(app, ["verify", str(a), str(b), "--model", str(tmp_path / "m.card.json"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"] == card.name and out["threshold"] == card.threshold("verify")
    api = faceforge.verify(a, b, model=str(tmp_path / "m.card.json"), device="cpu")
    assert out["same_person"] == api.same and out["score"] == pytest.approx(api.score, abs=1e-4)


def test_a_broken_card_names_the_problem(tmp_path):
    path = tmp_path / "x.card.json"
    path.write_text(json.dumps({"name": "x", "input": {"template": "nope", "size": 112}, "embedding_dim": 8}))
    with pytest.raises(ModelLoadError, match="template 'nope'"):
        create_embedder(str(path))
    path.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not readable JSON"):
        create_embedder(str(path))
    with pytest.raises(ModelLoadError, match="model card not found"):
        create_embedder(str(tmp_path / "missing.safetensors"))
