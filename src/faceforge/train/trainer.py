"""One Trainer for every recipe: a backbone, a head or loss that returns a scalar, a dataset.

Determinism: the epoch order is a function of (seed, epoch) and each sample's augmentation
of (seed, epoch, index), so worker count does not matter, DDP ranks take disjoint slices of
the same order, and `resume` continues mid-epoch with exactly the batches (and, on the CPU,
exactly the weights) an uninterrupted run would have produced: a checkpoint holds every
random generator a step can draw from (torch CPU and CUDA, numpy, Python), and the
DataLoader draws from its own generator, seeded by (seed, epoch, rank), not the global one.

The head states what it needs (models.heads.base): a loss that needs positives in the
batch gets P identities × K images batches; sharded parameters (Partial FC under DDP) keep
their per-rank gradients while every other head parameter is averaged across ranks; the
head's gradient norm for clipping is the norm over all shards; `best.pt` holds the whole
head, every rank's shard gathered.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset

from faceforge.core.device import resolve_device
from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.core.extras import require
from faceforge.core.files import atomic_write_json
from faceforge.core.progress import progress
from faceforge.models.heads.base import full_state_dict, needs_pk, sharded_parameters
from faceforge.models.weights import load_state
from faceforge.train.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from faceforge.train.distill import Distiller
from faceforge.train.samplers import epoch_order, pk_batch_count, pk_batches


@dataclass
class TrainConfig:
    output: str = "runs/train"
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"            # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    head_lr_mult: float = 1.0         # head learning rate = lr × this
    scheduler: str = "cosine"         # cosine | poly | constant
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    grad_clip: float | None = 5.0
    grad_accum: int = 1
    amp: bool = True                  # only on CUDA
    channels_last: bool = False
    seed: int = 0
    checkpoint_every: int = 0         # steps; 0 = at the end of each epoch only
    num_workers: int = 0
    sampler: str = "auto"             # auto (P×K when the loss needs it) | uniform | pk
    pk_k: int = 4                     # K images per identity in a P×K batch (P = batch_size / K)
    freeze: list[str] = field(default_factory=list)    # fnmatch patterns of parameter names
    unfreeze: list[str] = field(default_factory=list)  # exceptions to `freeze`
    best_metric: str | None = None    # a metric the callbacks return; higher is better
    early_stop_patience: int = 0      # epochs without improvement; 0 = never stop early
    log_every: int = 10
    tensorboard: bool = True
    device: str = "auto"


class Callback(Protocol):
    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> dict[str, float]: ...


def arcface_preprocess(batch: np.ndarray) -> torch.Tensor:
    """N×H×W×3 RGB uint8 → N×3×H×W in [-1, 1] (insightface recognisers)."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


class _EpochView(Dataset):
    """Position → the sample the (seed, epoch) order puts there, augmented with its own rng,
    with its dataset index (a teacher looks its outputs up by it). A dataset whose labels
    move with its pixels (landmarks) augments both itself: it has `augmented_item(index, rng)`."""

    def __init__(self, base: Dataset, order: np.ndarray, seed: int, epoch: int, transform) -> None:
        self.base, self.order, self.seed, self.epoch, self.transform = base, order, seed, epoch, transform

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, pos: int):
        idx = int(self.order[pos])
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        if hasattr(self.base, "augmented_item"):
            img, label = self.base.augmented_item(idx, rng)
        else:
            img, label = self.base[idx]
            if self.transform is not None:
                img = self.transform(img, rng)
        return img, label, idx


def _collate(items):
    """Images stacked as uint8; labels an integer vector (identities), or stacked float
    arrays (points) when the dataset's labels are arrays."""
    first = items[0][1]
    labels = torch.from_numpy(np.stack([i[1] for i in items]).astype(np.float32)) if isinstance(first, np.ndarray) \
        else torch.tensor([int(i[1]) for i in items])
    return np.stack([i[0] for i in items]), labels, torch.tensor([i[2] for i in items])


class Trainer:
    def __init__(self, backbone: nn.Module, head: nn.Module, dataset: Dataset, config: TrainConfig,
                 transform: Callable | None = None, preprocess: Callable | None = None,
                 callbacks: Sequence[Callback] = (), identity: dict | None = None,
                 distiller: Distiller | None = None) -> None:
        self.cfg = config
        self.dataset, self.transform = dataset, transform
        self.preprocess = preprocess or getattr(backbone, "preprocess", arcface_preprocess)
        self.callbacks = list(callbacks)
        self.identity = dict(identity or {})  # what a checkpoint must match (arch, classes…)
        # how the training crops were prepared (template, size, normalisation): the exported
        # model's card repeats it, so that embedding aligns faces the way training saw them
        self.input_spec: dict = {}
        self.skipped: list[dict] = []  # skip records of unusable training files (path, kind, reason)
        self.out = Path(config.output)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            raise FaceForgeError("WORLD_SIZE > 1: call faceforge.train.init_distributed() first (torchrun)")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        device = config.device
        if self.distributed and device == "auto":  # one GPU per process under torchrun
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        self.device = resolve_device(device)
        self.backbone, self.head = backbone.to(self.device), head.to(self.device)
        self.distiller = distiller.to(self.device) if distiller is not None else None
        if self.distiller is not None:
            self.distiller.teacher.to(self.device)
        if config.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        self._apply_freeze()
        # A wholly frozen backbone (training a classifier on a fixed model, e.g. a teacher's
        # FC) runs in eval mode without gradients, so its BatchNorm statistics stay its own.
        self.backbone_frozen = not any(p.requires_grad for p in self.backbone.parameters())
        self.model = DDP(self.backbone) if self.distributed and not self.backbone_frozen else self.backbone
        self._unlabelled = getattr(dataset, "unlabelled", 0) > 0  # faces added with label −1
        self._check_distillation()
        # The head stays outside DDP: its replicated parameters' gradients are averaged by
        # hand after backward, its sharded ones are already exact on each rank.
        self.loss_fn = self.head
        sharded = {id(p) for p in sharded_parameters(self.head)}
        self._head_sharded = [p for p in self.head.parameters() if id(p) in sharded and p.requires_grad]
        self._head_replicated = [p for p in self.head.parameters() if id(p) not in sharded and p.requires_grad]
        if self.distiller is not None:
            self._head_replicated += [p for p in self.distiller.parameters() if p.requires_grad]
        self.use_pk = self._wants_pk()
        self.use_amp = bool(config.amp) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.optimizer = self._make_optimizer()
        if self.use_pk:
            batches = pk_batch_count(self.dataset.targets, config.batch_size // config.pk_k, config.pk_k)
            self.steps_per_epoch = max(1, batches // self.world // config.grad_accum)
        else:
            n = len(dataset) // self.world
            self.steps_per_epoch = max(1, n // (config.batch_size * config.grad_accum))
        self.total_steps = self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.history: list[dict] = []
        self._parts: list[dict[str, float]] = []
        self.best: dict | None = None
        self.stale_epochs = 0
        self._tb = None
        # looked up now, so that a missing tensorboard stops the run before its first step
        self._tensorboard = (require("torch.utils.tensorboard", "train",
                                     "TensorBoard logging (off: train.tensorboard: false)")
                             if self.rank == 0 and config.tensorboard else None)

    # ---- set-up -------------------------------------------------------------------
    def _check_distillation(self) -> None:
        if self._unlabelled and (sharded_parameters(self.head) or needs_pk(self.head) or self.cfg.sampler == "pk"):
            raise FaceForgeError("unlabelled faces cannot train a sharded Partial FC or a P×K loss; "
                                 "use a full FC head (or head: none) with them")
        if self._unlabelled and self.distributed:
            raise FaceForgeError("unlabelled faces train in one process: a rank whose batch has no label "
                                 "would skip the head's collectives")
        if self.distiller is None and not any(p.requires_grad for p in self.head.parameters()) and \
                self.identity.get("head") == "none":
            raise FaceForgeError("head: none learns nothing without a distill section")
        d = self.distiller
        if d is None or not d.cfg.kd_weight:
            return
        if not hasattr(self.head, "class_logits"):
            raise FaceForgeError("logit distillation needs a full FC or softmax head (not Partial FC "
                                 "or a weighted sum): its un-margined logits are compared with the teacher's")
        classes = self.identity.get("num_classes")
        if classes is not None and d.teacher.num_classes != classes:
            raise FaceForgeError(f"the teacher's head has {d.teacher.num_classes} classes, the student "
                                 f"trains on {classes}: logit distillation needs the same identities")

    def _wants_pk(self) -> bool:
        c = self.cfg
        if c.sampler not in ("auto", "uniform", "pk"):
            raise FaceForgeError(f"unknown sampler {c.sampler!r} (auto | uniform | pk)")
        if c.sampler == "uniform" and needs_pk(self.head):
            raise FaceForgeError("this loss needs P×K batches (several images per identity): "
                                 "use sampler: auto or pk")
        if not (c.sampler == "pk" or (c.sampler == "auto" and needs_pk(self.head))):
            return False
        if c.pk_k < 2 or c.batch_size % c.pk_k:
            raise FaceForgeError(f"P×K batches need batch_size ({c.batch_size}) divisible by pk_k "
                                 f"({c.pk_k}) and pk_k >= 2")
        if not hasattr(self.dataset, "targets"):
            raise FaceForgeError("P×K batches need the dataset's labels (a `targets` array)")
        return True

    def _apply_freeze(self) -> None:
        for name, p in list(self.backbone.named_parameters(prefix="backbone")) + \
                list(self.head.named_parameters(prefix="head")):
            frozen = any(fnmatch.fnmatch(name, pat) for pat in self.cfg.freeze) and \
                not any(fnmatch.fnmatch(name, pat) for pat in self.cfg.unfreeze)
            if frozen:
                p.requires_grad_(False)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.cfg
        extra = [p for p in self.distiller.parameters() if p.requires_grad] if self.distiller is not None else []
        groups = [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": c.lr},
                  {"params": [p for p in self.head.parameters() if p.requires_grad] + extra,
                   "lr": c.lr * c.head_lr_mult}]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise FaceForgeError("every parameter is frozen: nothing to train")
        if c.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay)
        raise FaceForgeError(f"unknown optimizer {c.optimizer!r} (sgd | adamw)")

    def _lr_factor(self, step: int) -> float:
        c = self.cfg
        warm = int(round(c.warmup_epochs * self.steps_per_epoch))
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, self.total_steps - warm)
        floor = c.min_lr / c.lr if c.lr else 0.0
        if c.scheduler == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if c.scheduler == "poly":
            return floor + (1 - floor) * (1 - min(t, 1.0)) ** 2
        if c.scheduler == "constant":
            return 1.0
        raise FaceForgeError(f"unknown scheduler {c.scheduler!r} (cosine | poly | constant)")

    # ---- checkpoints --------------------------------------------------------------
    def state(self) -> dict:
        return {"identity": self.identity, "input": self.input_spec, "config": asdict(self.cfg),
                "backbone": self.backbone.state_dict(), "head": self.head.state_dict(),
                "distill": self.distiller.state_dict() if self.distiller is not None else {},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "rng": _rng_state(),
                "history": json.dumps(self.history), "best": json.dumps(self.best),
                "stale_epochs": self.stale_epochs}

    def save(self, name: str = "last.pt") -> Path:
        path = self.out / (name if self.world == 1 else name.replace(".pt", f".rank{self.rank}.pt"))
        save_checkpoint(path, self.state())
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Continue from a checkpoint (default: output/last.pt). False if there is none."""
        path = Path(path) if path else self.out / ("last.pt" if self.world == 1 else f"last.rank{self.rank}.pt")
        if not path.exists():
            return False
        s = load_checkpoint(path)
        check_compatible(s.get("identity", {}), self.identity, path)
        load_state(self.backbone, s["backbone"], "backbone", path)
        load_state(self.head, s["head"], "head", path)
        if self.distiller is not None:
            load_state(self.distiller, s.get("distill", {}), "distillation adapter", path)
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.scaler.load_state_dict(s["scaler"])
        self.step, self.epoch, self.batch_in_epoch = s["step"], s["epoch"], s["batch_in_epoch"]
        if "rng" not in s:
            raise ModelLoadError("checkpoint from an older FaceForge (no saved random generators): "
                                 "it cannot resume exactly; start the run again", path)
        _set_rng_state(s["rng"])
        self.history, self.best = json.loads(s["history"]), json.loads(s["best"])
        self.stale_epochs = s["stale_epochs"]
        return True

    # ---- training -----------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's samples for `epoch`, batch after batch (disjoint slices across ranks)."""
        c = self.cfg
        if self.use_pk:
            batches = pk_batches(self.dataset.targets, c.batch_size // c.pk_k, c.pk_k, c.seed, epoch)
            per_rank = len(batches) // self.world
            return np.concatenate(batches[self.rank * per_rank:(self.rank + 1) * per_rank])
        order = epoch_order(len(self.dataset), c.seed, epoch)
        per_rank = len(order) // self.world
        return order[self.rank * per_rank:(self.rank + 1) * per_rank]

    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        view = _EpochView(self.dataset, self._epoch_order(epoch), self.cfg.seed, epoch, self.transform)
        bs = self.cfg.batch_size
        used = self.steps_per_epoch * self.cfg.grad_accum * bs
        positions = range(start_batch * bs, used)
        # its own generator: creating the iterator draws a seed, which must not shift the
        # global stream that dropout and Partial FC sampling use
        generator = torch.Generator().manual_seed(int(np.random.default_rng(
            [self.cfg.seed, epoch, self.rank, 7]).integers(2 ** 62)))
        return DataLoader(view, batch_size=bs, sampler=list(positions), collate_fn=_collate,
                          num_workers=self.cfg.num_workers, drop_last=True, generator=generator)

    def _log(self, scalars: dict[str, float]) -> None:
        if self._tensorboard is None:
            return
        if self._tb is None:
            self._tb = self._tensorboard.SummaryWriter(str(self.out / "tensorboard"))
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, self.step)

    def train_step(self, images: np.ndarray, labels: torch.Tensor, accumulate: bool,
                   index: torch.Tensor | None = None) -> float:
        """One forward/backward (and, unless accumulating, an optimiser step); `index` are the
        samples' dataset indices, which a distillation teacher needs."""
        x = self.preprocess(images).to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp), \
                torch.set_grad_enabled(not self.backbone_frozen):
            emb = self.model(x)
        emb = emb.float()
        if self._unlabelled:  # the head learns from the labelled rows only
            known = y >= 0
            loss = self.loss_fn(emb[known], y[known]) if bool(known.any()) else emb.sum() * 0.0
        else:
            loss = self.loss_fn(emb, y)
        if self.distiller is not None:
            if index is None:
                raise FaceForgeError("a distillation step needs the samples' dataset indices")
            d = self.distiller
            teacher = d.teacher(index, images, want_features=d.features is not None)
            loss, parts = d.loss(loss, emb, getattr(self.head, "class_logits", None), teacher, self.epoch,
                                 self.cfg.epochs)
            self._parts.append(parts)
        self.scaler.scale(loss / self.cfg.grad_accum).backward()
        if not accumulate:
            if self.distributed:
                _average_gradients(self._head_replicated, self.world)
            if self.cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.backbone.parameters(), self.cfg.grad_clip)
                self._clip_head(self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        return float(loss.detach())

    def _clip_head(self, max_norm: float) -> None:
        """Clip the head by its whole norm: the shards' squared norms summed over ranks."""
        def sq(params):
            grads = [p.grad.detach().float() for p in params if p.grad is not None]
            return torch.stack([g.pow(2).sum() for g in grads]).sum() if grads else torch.zeros((), device=self.device)
        total = sq(self._head_sharded)
        if self.distributed and self._head_sharded:
            dist.all_reduce(total)
        norm = (total + sq(self._head_replicated)).sqrt()
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        for p in self._head_sharded + self._head_replicated:
            if p.grad is not None:
                p.grad.mul_(coef.to(p.grad.device))

    def fit(self, stop_after_steps: int | None = None) -> list[dict]:
        """Train to the configured number of epochs; returns the per-epoch history."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.step == 0:  # a resumed run restores the generators instead
            torch.manual_seed(self.cfg.seed + self.rank)
            np.random.seed(self.cfg.seed + self.rank)
            random.seed(self.cfg.seed + self.rank)
        c = self.cfg
        while self.epoch < c.epochs:
            self.backbone.train(not self.backbone_frozen)
            self.head.train()
            t0, losses = time.perf_counter(), []
            self._parts: list[dict[str, float]] = []
            loader = self._loader(self.epoch, self.batch_in_epoch * c.grad_accum)
            micro = 0
            for images, labels, index in progress(loader, f"epoch {self.epoch + 1}/{c.epochs}",
                                                  enabled=None if self.rank == 0 else False):
                micro += 1
                accumulate = micro % c.grad_accum != 0
                losses.append(self.train_step(images, labels, accumulate, index))
                if accumulate:
                    continue
                self.step += 1
                self.batch_in_epoch += 1
                if self.step % c.log_every == 0:
                    self._log({"train/loss": float(np.mean(losses[-c.log_every * c.grad_accum:])),
                               "train/lr": self.optimizer.param_groups[0]["lr"]})
                if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save()
                if stop_after_steps is not None and self.step >= stop_after_steps:
                    return self.history
            row = {"epoch": self.epoch + 1, "step": self.step, "loss": float(np.mean(losses)) if losses else None,
                   "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2),
                   "images_per_s": round(len(losses) * c.batch_size * self.world / max(time.perf_counter() - t0, 1e-9), 1)}
            if self._parts:  # the distillation loss's parts, averaged over the epoch
                row.update({f"distill_{k}": float(np.mean([p[k] for p in self._parts])) for k in self._parts[0]})
            for cb in self.callbacks:
                self.backbone.eval()
                row.update(cb.on_epoch_end(self, self.epoch))
            self.history.append(row)
            self._log({k: v for k, v in row.items() if isinstance(v, float) and k not in ("lr", "seconds")})
            self.epoch += 1
            self.batch_in_epoch = 0
            stop = self._track_best(row)
            self.save()
            if self.rank == 0:
                atomic_write_json(self.out / "history.json", self.history)
            if stop:
                break
        if self._tb is not None:
            self._tb.flush()
        return self.history

    def run(self, resume: bool = True) -> dict:
        """Resume from output/last.pt (when asked and there is one), fit, and summarise the
        run: {output, resumed, steps, history, best}."""
        resumed = self.resume() if resume else False
        if self.skipped and self.rank == 0:  # files the data path left out, and why
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / "skipped.json", self.skipped)
        history = self.fit()
        res = {"output": self.cfg.output, "resumed": resumed, "steps": self.step, "history": history,
               "best": self.best}
        return {**res, "skipped": self.skipped} if self.skipped else res

    def _write_best(self, head_state: dict, row: dict) -> None:
        save_checkpoint(self.out / "best.pt", {"identity": self.identity, "input": self.input_spec,
                                               "backbone": self.backbone.state_dict(), "head": head_state,
                                               "metrics": json.dumps(row)})

    def _track_best(self, row: dict) -> bool:
        key = self.cfg.best_metric
        if not key or key not in row:
            return False
        if self.best is None or row[key] > self.best[key]:
            self.best = dict(row)
            self.stale_epochs = 0
            head = full_state_dict(self.head)  # collective: every rank takes part
            if self.rank == 0:
                self._write_best(head, row)
            return False
        self.stale_epochs += 1
        return bool(self.cfg.early_stop_patience) and self.stale_epochs >= self.cfg.early_stop_patience


def _average_gradients(params: list[nn.Parameter], world: int) -> None:
    """What DDP does for the backbone, for the head's replicated parameters."""
    for p in params:  # a parameter this rank did not use still takes part in the sum
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _rng_state() -> dict:
    """Every generator a training step can draw from, as tensors and plain numbers (so a
    checkpoint loads with weights_only)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64),
                       "gauss": py_gauss}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def init_distributed() -> bool:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA); False if single."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return True
