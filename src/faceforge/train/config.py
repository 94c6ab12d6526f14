"""Plain YAML configs → a ready Trainer.

    model: {backbone: mbf, num_features: 512, weights: null}     # weights: .safetensors or .pt
    head:  {type: arcface, s: 64, m: 0.5, partial_fc: 0.0}
    data:  {root: aligned/, rec: null, augment: light, balance: null}  # root: <identity>/<image>
    train: {epochs: 10, batch_size: 64, lr: 0.1, output: runs/x}  # any TrainConfig field
    val:   {pairs: val_pairs.txt, root: aligned/}                 # optional
    distill: {teacher: {...}, kd: {...}, features: {...}, embedding: {...}}  # train.distill

`task: reid` trains on body crops of person folders (train.reid); `task: landmarks` builds
the landmark network's run instead (train.landmarks).
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from faceforge.core.errors import FaceForgeError
from faceforge.io.datasets import ImageFolderDataset, RecordIODataset
from faceforge.models.backbones import create_backbone
from faceforge.models.cards import backbone_input
from faceforge.models.heads.factory import build_head
from faceforge.models.weights import load_weights
from faceforge.train.augment import face_train_augment
from faceforge.train.trainer import Callback, TrainConfig, Trainer


def load_yaml(path: str | Path) -> dict:
    import yaml
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FaceForgeError(f"cannot read config: {exc}", path) from None
    if not isinstance(cfg, dict):
        raise FaceForgeError("config must be a mapping with model/head/data/train sections", path)
    return cfg


def train_config(section: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise FaceForgeError(f"unknown train options {unknown}; known: {sorted(known)}")
    return TrainConfig(**section)


def _file_list(data: dict) -> list[str] | None:
    """`data.list`: the images to use, one path relative to `data.root` per line."""
    if not data.get("list"):
        return None
    path = Path(data["list"])
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise FaceForgeError(f"cannot read the image list: {exc}", path) from None


def _backbone(model: dict, default: str) -> tuple[str, dict, torch.nn.Module]:
    """The `model:` section → (name, build arguments, the backbone with `weights` loaded)."""
    name = model.get("backbone", default)
    kw = {k: v for k, v in model.items() if k not in ("backbone", "weights")}
    backbone = create_backbone(name, **kw)
    if model.get("weights"):
        load_weights(backbone, model["weights"])
    return name, kw, backbone


def build_trainer(cfg: dict, callbacks: Sequence[Callback] = (), **overrides) -> Trainer:
    task = cfg.get("task", "recognition")
    if task == "landmarks":  # the landmark network (train.landmarks)
        from faceforge.train.landmarks import build_landmark_trainer
        return build_landmark_trainer(cfg, callbacks, **overrides)
    if task not in ("recognition", "reid"):
        raise FaceForgeError(f"unknown task {task!r} (recognition | reid | landmarks)")
    m, h, d = cfg.get("model", {}), cfg.get("head", {}), cfg.get("data", {})
    tcfg = train_config({**cfg.get("train", {}), **overrides})
    held_out = body_spec = None
    if task == "reid":  # body crops of person folders (train.reid)
        from faceforge.train.reid import build_reid_data
        dataset, transform, body_spec, held_out = build_reid_data(d, tcfg.seed)
        num_classes, dataset_skipped = len(dataset.classes), dataset.folder.skipped
    elif d.get("rec"):
        dataset = RecordIODataset(d["rec"], num_classes=d.get("num_classes"))
        num_classes = dataset.num_classes
    elif d.get("root"):
        dataset = ImageFolderDataset(d["root"], files=_file_list(d))
        num_classes = len(dataset.classes)
    else:
        raise FaceForgeError("data: give `root` (identity folders) or `rec` (RecordIO)")
    if not num_classes:
        raise FaceForgeError("the number of classes is unknown (set data.num_classes)")
    for folder in d.get("unlabelled") or []:  # faces without identities, for a label-free loss
        if not hasattr(dataset, "add_unlabelled"):
            raise FaceForgeError("data.unlabelled needs data.root (an image-folder dataset)")
        dataset.add_unlabelled(folder)
    if d.get("balance") and d.get("unlabelled"):
        raise FaceForgeError("data.balance resamples identities: it cannot take data.unlabelled faces")
    if d.get("balance"):  # every identity resampled to exactly `balance` images
        from faceforge.train.augment import balance_augment
        from faceforge.train.samplers import BalancedDataset
        # body crops: every copy already gets its own draw of the re-id augmentation
        copies = balance_augment() if task == "recognition" else (lambda img, rng: img)
        dataset = BalancedDataset(dataset, dataset.targets, int(d["balance"]), copies,
                                  float(d.get("balance_quantile", 0.25)), tcfg.seed)
        num_classes = dataset.num_classes
    torch.manual_seed(tcfg.seed)  # the initial weights are part of the recipe
    name, kw, backbone = _backbone(m, "mbf")
    num_features = getattr(backbone, "num_features", kw.get("num_features", 512))
    if name == "dlib-r29":
        num_features = 128
    head = build_head(h, num_features, num_classes)
    if h.get("init") == "class_means":  # weight imprinting for fine-tuning a pretrained backbone
        from faceforge.train.imprint import class_mean_embeddings, imprint
        from faceforge.train.trainer import arcface_preprocess
        pre = getattr(backbone, "preprocess", arcface_preprocess)
        imprint(head, class_mean_embeddings(backbone, dataset, num_classes, pre))
    cbs = list(callbacks)
    if held_out is not None:
        from faceforge.evaluate.callbacks import ReidValidation
        cbs.append(ReidValidation(held_out.images(), held_out.people, held_out.cameras))
    if cfg.get("val", {}).get("pairs"):
        from faceforge.evaluate.callbacks import VerificationCallback
        cbs.append(VerificationCallback(cfg["val"]["pairs"], cfg["val"].get("root", d.get("root", "."))))
    identity = {"backbone": name, "num_features": int(num_features), "num_classes": int(num_classes),
                "head": h.get("type", "arcface"), "backbone_kwargs": kw}
    if task == "recognition":
        augment = d.get("augment", "light")
        transform = face_train_augment(augment) if augment else None
    if cfg.get("mutual"):
        if cfg.get("distill"):
            raise FaceForgeError("give either distill (a fixed teacher) or mutual (two students), not both")
        trainer = _mutual_trainer(cfg, backbone, head, identity, dataset, num_classes, tcfg, transform, cbs)
    else:
        distiller = None
        if cfg.get("distill"):
            distiller = _distiller(cfg["distill"], backbone, head, dataset, int(num_features))
            identity["distill"] = json.dumps(cfg["distill"], sort_keys=True)
        trainer = Trainer(backbone, head, dataset, tcfg, transform=transform, callbacks=cbs, identity=identity,
                          distiller=distiller)
    spec = body_spec or backbone_input(name, int(dataset[0][0].shape[0]), d.get("template"))
    trainer.input_spec = asdict(spec)
    if task == "reid":
        trainer.skipped = list(dataset_skipped)
    return trainer


def _mutual_trainer(cfg: dict, backbone, head, identity: dict, dataset, num_classes: int, tcfg: TrainConfig,
                    transform, callbacks: list):
    """The `mutual:` section: a second model (`peer:`, default the same as `model:`) with its
    own head, trained with the first by deep mutual learning (train.mutual)."""
    from faceforge.train.mutual import MemberVerification, ModelPair, MutualConfig, MutualHead, MutualTrainer
    mcfg = MutualConfig.from_section(cfg["mutual"])
    name2, kw2, peer = _backbone(cfg.get("peer") or cfg.get("model", {}), "mbf")
    dim2 = int(getattr(peer, "num_features", kw2.get("num_features", 512)))
    peer_head = build_head(cfg.get("head", {}), dim2, num_classes)
    dims = (identity["num_features"], dim2)
    members = (identity, {**identity, "backbone": name2, "num_features": dim2, "backbone_kwargs": kw2})
    pair_identity = {"mutual": json.dumps(cfg["mutual"], sort_keys=True), "members": json.dumps(members, sort_keys=True),
                     "num_classes": identity["num_classes"]}
    cbs = [MemberVerification(cb) if hasattr(cb, "evaluate") else cb for cb in callbacks]
    pair = ModelPair(backbone, peer, dims)
    if hasattr(backbone, "preprocess"):  # both members are fed the first's normalisation
        pair.preprocess = backbone.preprocess
    return MutualTrainer(pair, MutualHead(head, peer_head, dims, mcfg), dataset, tcfg,
                         transform=transform, callbacks=cbs, identity=pair_identity, member_identities=members)


def _distiller(section: dict, backbone: torch.nn.Module, head: torch.nn.Module, dataset, dim: int):
    """The `distill:` section → a Distiller with its teacher (train.distill, train.teachers)."""
    from faceforge.train.distill import DistillConfig, Distiller
    from faceforge.train.teachers import build_teacher
    from faceforge.train.trainer import arcface_preprocess
    dcfg = DistillConfig.from_section(section)
    margin_s = getattr(getattr(head, "margin", None), "s", 64.0)
    scale = float(dcfg.scale if dcfg.scale is not None else margin_s)
    if dcfg.feature_weight and (section.get("teacher") or {}).get("root"):
        raise FaceForgeError("feature matching compares maps of the same augmented crop: the teacher must "
                             "see the student's crops (no teacher root)")
    if dcfg.feature_weight and section.get("teacher"):
        section = {**section, "teacher": {**section["teacher"], "feature_layer": dcfg.teacher_layer}}
    teacher = build_teacher(section, dataset, scale)
    images = np.stack([dataset[0][0]])
    probe = (torch.tensor([0]), images, getattr(backbone, "preprocess", arcface_preprocess)(images))
    return Distiller(dcfg, teacher, backbone, dim, probe)


def build_bn_finetuner(cfg: dict, **overrides):
    """BatchNorm fine-tuning from YAML:

        model: {backbone: dlib-r29, weights: null}
        data:  {root: aligned/, list: null}          # crops at the backbone's input size
        bn:    {epochs: 3, batch_size: 64, momentum: 0.1, noise: 0.05, blur: 0.05, ood: 0.05,
                snapshot_every: 0, output: runs/bn}
        ood:   {source: fractals}                    # or a folder of face-free images
        val:   {pairs: val_pairs.txt, root: aligned/}  # verification accuracy of every snapshot
    """
    from faceforge.train.bn_finetune import BNFinetuneConfig, BNFinetuner, OutOfDomainImages
    m, d = cfg.get("model", {}), cfg.get("data", {})
    bcfg = BNFinetuneConfig.from_dict({**cfg.get("bn", {}), **overrides})
    if not d.get("root"):
        raise FaceForgeError("data: give `root`, a folder of aligned faces (<identity>/<image>)")
    dataset = ImageFolderDataset(d["root"], files=_file_list(d))
    _, _, backbone = _backbone(m, "dlib-r29")
    from faceforge.train.trainer import arcface_preprocess
    pre = getattr(backbone, "preprocess", arcface_preprocess)
    size = dataset[0][0].shape[0]
    ood = None
    source = cfg.get("ood", {}).get("source")
    if source == "fractals":
        from faceforge.io.fractals import FractalImages
        ood = FractalImages(size, seed=bcfg.seed)
    elif source:
        ood = OutOfDomainImages(source, size)
    evaluate, metric = None, None
    if cfg.get("val", {}).get("pairs"):
        from faceforge.evaluate.callbacks import VerificationCallback
        cb = VerificationCallback(cfg["val"]["pairs"], cfg["val"].get("root", d["root"]))
        evaluate, metric = (lambda model: cb.evaluate(model, pre, next(model.parameters()).device)), "val_acc"
    return BNFinetuner(backbone, dataset, bcfg, pre, ood=ood, evaluate=evaluate, metric=metric)
