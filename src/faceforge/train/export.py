"""A training checkpoint as deployable weights: rebuild the backbone its identity record
names, load the trained state and write ONNX or safetensors (the writers are
faceforge.models.export)."""
from __future__ import annotations

from pathlib import Path

from faceforge.core.errors import FaceForgeError
from faceforge.models.backbones.registry import create_untrained_backbone
from faceforge.models.cards import InputSpec, ModelCard, Threshold, backbone_input, card_path
from faceforge.models.export import export_onnx, export_safetensors
from faceforge.models.weights import load_state
from faceforge.train.checkpoint import load_checkpoint

FORMATS = ("onnx", "safetensors")


def export_checkpoint(checkpoint: str | Path, output: str | Path, fmt: str) -> dict:
    """Write the backbone of a training checkpoint (last.pt / best.pt) to `output` as
    `fmt` (onnx | safetensors; safetensors metadata is the identity record). ONNX loads
    back as embedder `onnx:PATH`."""
    if fmt not in FORMATS:
        raise FaceForgeError(f"unknown export format {fmt!r} ({' | '.join(FORMATS)})")
    ckpt = load_checkpoint(checkpoint)
    ident = ckpt.get("identity") or {}
    if ident.get("task") == "landmarks":
        if fmt != "safetensors":
            raise FaceForgeError("a landmark network exports as safetensors (with its card)", checkpoint)
        from faceforge.train.landmarks import export_landmark_checkpoint
        return export_landmark_checkpoint(checkpoint, output)
    if "backbone" not in ident:
        raise FaceForgeError("checkpoint does not say which backbone it holds", checkpoint)
    model = create_untrained_backbone(ident["backbone"], **ident.get("backbone_kwargs", {}))
    load_state(model, ckpt["backbone"], "backbone", checkpoint)
    card = checkpoint_card(ckpt, model, Path(output), checkpoint)  # refuses before anything is written
    path = export_onnx(model, output) if fmt == "onnx" else export_safetensors(model, output, ident)
    card_file = card.save(card_path(path))
    return {"format": fmt, "output": str(path), "backbone": ident["backbone"], "card": str(card_file),
            "threshold": card.threshold("verify")}


def checkpoint_card(ckpt: dict, model, weights: Path, checkpoint: str | Path) -> ModelCard:
    """The card of an exported checkpoint: its input as training prepared it, its dimension,
    and the validation threshold of the epoch it holds (best.pt) or of the last epoch."""
    import json

    import torch
    ident = ckpt["identity"]
    spec = InputSpec.from_dict(ckpt["input"], checkpoint) if ckpt.get("input") else \
        backbone_input(ident["backbone"], 112)
    if spec.template != "arcface" and weights.suffix == ".onnx":
        raise FaceForgeError("ONNX export is for insightface-style ArcFace-template recognisers; "
                             f"this model was trained on {spec.template} crops: export safetensors", checkpoint)
    with torch.no_grad():
        dim = int(model.eval()(torch.zeros(1, 3, *spec.shape)).shape[1])
    rows = [json.loads(ckpt["metrics"])] if "metrics" in ckpt else json.loads(ckpt.get("history", "[]"))
    row = rows[-1] if rows else {}
    thresholds = {}
    if "val_pair_threshold" in row:  # a re-id run: best-accuracy threshold on held-out people's pairs
        thresholds["verify"] = Threshold(float(row["val_pair_threshold"]), (
            f"cross-camera pairs of the people held out of the training run, epoch {row.get('epoch')}: the "
            f"best-accuracy threshold (accuracy {100 * row.get('val_pair_acc', float('nan')):.2f} %)"))
    if "val_threshold" in row:
        thresholds["verify"] = Threshold(float(row["val_threshold"]), (
            f"validation pairs of the training run, epoch {row.get('epoch')}: mean of the 10-fold thresholds "
            f"(accuracy {100 * row.get('val_acc', float('nan')):.2f} %)"))
    stem = Path(checkpoint).resolve().parent.name
    return ModelCard(name=f"{stem}-{ident['backbone']}", input=spec, embedding_dim=dim, thresholds=thresholds,
                     licence="as the training data's", source=f"trained with faceforge from {Path(checkpoint).name}",
                     backbone=ident["backbone"], backbone_kwargs=dict(ident.get("backbone_kwargs", {})),
                     weights=weights.name)
