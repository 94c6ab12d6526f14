"""BatchNorm-statistics fine-tuning: every parameter frozen, only the BatchNorm
running means and variances move, re-estimated on the target data, optionally mixed with
pure-noise images, blurred images and face-free images.

Only BatchNorm layers run in train mode (they normalise with batch statistics and update
their running ones, momentum 0.1 by default); dropout and everything else stay in eval mode,
so the statistics are those of the network as it will be deployed. There is no loss and no
optimizer: a snapshot is the BatchNorm buffers alone (a small safetensors file), written
every `snapshot_every` steps and at each epoch's end, evaluated by an injected function, and
the best one kept. A killed run resumes from its last snapshot. Under DDP (torchrun), rank 0's
statistics are broadcast first, each rank takes a disjoint slice of every epoch, and the
ranks' running statistics are averaged at every snapshot.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.core.files import atomic_write, atomic_write_json
from faceforge.core.progress import progress
from faceforge.io.images import load_image
from faceforge.train.augment import gaussian_blur
from faceforge.train.samplers import epoch_order

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class BNFinetuneConfig:
    output: str = "runs/bn"
    epochs: int = 3
    batch_size: int = 64
    momentum: float | None = 0.1  # None: cumulative average over the fine-tuning batches
    noise: float = 0.0          # ⌊noise·B⌋ N(0,1) images (in the network's input space) appended per batch
    blur: float = 0.0           # probability of Gaussian blur σ ∈ [3, 5], first in the pipeline
    ood: float = 0.0            # share of each batch replaced by out-of-domain images
    snapshot_every: int = 0     # steps; 0 = at each epoch's end only
    max_steps_per_epoch: int = 0  # 0 = the whole dataset
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_dict(cls, d: dict) -> "BNFinetuneConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise FaceForgeError(f"unknown bn options {unknown}; known: {sorted(known)}")
        cfg = cls(**d)
        for name in ("noise", "blur", "ood"):
            if not 0.0 <= getattr(cfg, name) < 1.0:
                raise FaceForgeError(f"bn.{name} must be a fraction in [0, 1), got {getattr(cfg, name)}")
        if cfg.momentum is not None and not 0.0 < cfg.momentum <= 1.0:
            raise FaceForgeError(f"bn.momentum must be in (0, 1] or null (cumulative average), got {cfg.momentum}")
        return cfg


def batchnorms(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
    if not bns:
        raise FaceForgeError(f"{type(model).__name__} has no BatchNorm layer: nothing to fine-tune")
    missing = [n for n, m in bns if not m.track_running_stats]
    if missing:
        raise FaceForgeError(f"BatchNorm layers without running statistics: {missing[:3]}")
    return bns


def prepare_for_bn_finetune(model: nn.Module, momentum: float | None = 0.1) -> None:
    """Freeze all parameters, put BatchNorm layers (only) in train mode with this momentum.
    momentum None = the plain average of every fine-tuning batch (PyTorch's cumulative mode);
    the batch counters restart so the pretrained count does not freeze the average."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for _, bn in batchnorms(model):
        bn.momentum = momentum
        if momentum is None:
            bn.num_batches_tracked.zero_()
        bn.train()


def recompute_bn_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """"Precise BN": every BatchNorm's statistics become the plain average of its statistics
    over `batches` (no momentum), the weights untouched; the model is left in eval mode. It
    gives a network statistics that fit its present weights — those of a training run lag
    them, and a randomly initialised network's (0 and 1) let activations vanish or overflow."""
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    prepare_for_bn_finetune(model, momentum=None)
    with torch.no_grad():
        for x in batches:
            model(x)
    model.eval()
    for n, p in model.named_parameters():
        p.requires_grad_(trainable[n])
    return model


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.{b}": getattr(m, b).detach().cpu().clone() for n, m in batchnorms(model) for b in BUFFERS}


def save_bn_buffers(model: nn.Module, path: str | Path) -> Path:
    from safetensors.torch import save
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fh.write(save(bn_buffers(model)))
    return path


def load_bn_buffers(model: nn.Module, path: str | Path) -> None:
    """Put a snapshot's statistics into `model`; every BatchNorm must be matched exactly."""
    from safetensors.torch import load_file
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ModelLoadError(f"cannot read BatchNorm snapshot: {exc}", path) from None
    own = bn_buffers(model)
    if set(state) != set(own):
        extra, miss = sorted(set(state) - set(own)), sorted(set(own) - set(state))
        raise ModelLoadError(f"snapshot does not fit the model (unexpected {extra[:3]}, missing {miss[:3]})", path)
    bad = [k for k in own if state[k].shape != own[k].shape]
    if bad:
        raise ModelLoadError(f"snapshot shapes differ for {bad[:3]}", path)
    mods = dict(model.named_modules())
    with torch.no_grad():
        for key, t in state.items():
            name, buf = key.rsplit(".", 1)
            getattr(mods[name], buf).copy_(t)


class OutOfDomainImages:
    """Face-free images from a folder, centre-cropped to a square and resized."""

    def __init__(self, folder: str | Path, size: int) -> None:
        from faceforge.io.images import list_images
        self.files, self.size = list_images(folder), int(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        import cv2
        img = load_image(self.files[int(i) % len(self.files)])
        h, w = img.shape[:2]
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        return cv2.resize(img[y:y + s, x:x + s], (self.size, self.size), interpolation=cv2.INTER_AREA)


def _distributed() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def _average_statistics(model: nn.Module) -> None:
    _, world = _distributed()
    if world == 1:
        return
    for _, bn in batchnorms(model):
        for buf in (bn.running_mean, bn.running_var):
            dist.all_reduce(buf)
            buf.div_(world)


class BNFinetuner:
    """images: indexable N×H×W×3 uint8 aligned faces (a Dataset's items may be (image, label));
    evaluate(model) → metrics dict, run with the model in eval mode; `metric` picks the best."""

    def __init__(self, model: nn.Module, images: Sequence, config: BNFinetuneConfig,
                 preprocess: Callable[[np.ndarray], torch.Tensor], ood: Sequence | None = None,
                 evaluate: Callable[[nn.Module], dict] | None = None, metric: str | None = None) -> None:
        from faceforge.core.device import resolve_device
        self.cfg, self.images, self.ood = config, images, ood
        self.preprocess, self.evaluate, self.metric = preprocess, evaluate, metric
        if config.ood > 0 and ood is None:
            raise FaceForgeError("bn.ood > 0 needs out-of-domain images (fractals or a folder)")
        if len(images) < config.batch_size:
            raise FaceForgeError(f"{len(images)} images: fewer than one batch of {config.batch_size}")
        if evaluate is not None and not metric:
            raise FaceForgeError("give the metric that decides the best snapshot")
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        prepare_for_bn_finetune(self.model, config.momentum)
        self.rank, self.world = _distributed()
        if self.world > 1:  # every rank starts from rank 0's statistics
            for _, bn in batchnorms(self.model):
                for b in BUFFERS:
                    dist.broadcast(getattr(bn, b), 0)
        self.out = Path(config.output)
        per_rank = len(images) // self.world
        steps = per_rank // config.batch_size
        self.steps_per_epoch = min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps
        self.step, self.history, self.best, self.best_finetuned = 0, [], None, None
        self._blur = gaussian_blur(3.0, 5.0)

    # ---- one batch -------------------------------------------------------------------
    def _item(self, idx: int) -> np.ndarray:
        item = self.images[idx]
        return item[0] if isinstance(item, tuple) else item

    def _batch(self, epoch: int, positions: np.ndarray, order: np.ndarray) -> torch.Tensor:
        c = self.cfg
        imgs = []
        n_ood = int(math.floor(c.ood * len(positions)))
        for j, pos in enumerate(positions):
            idx = int(order[pos])
            rng = np.random.default_rng([c.seed, epoch, idx])
            if j < n_ood:
                img = np.asarray(self.ood[int(rng.integers(0, len(self.ood)))])
            else:
                img = np.asarray(self._item(idx))
            if c.blur and rng.random() < c.blur:
                img = self._blur(img, rng)
            imgs.append(img)
        shapes = {i.shape for i in imgs}
        if len(shapes) != 1:
            raise FaceForgeError(f"images of different shapes in one batch: {sorted(shapes)[:3]} "
                                 "(out-of-domain images must match the face crops)")
        x = self.preprocess(np.stack(imgs))
        n_noise = int(math.floor(c.noise * len(imgs)))
        if n_noise:
            g = torch.Generator().manual_seed(c.seed * 1_000_003 + self.step * self.world + self.rank)
            x = torch.cat([x, torch.randn((n_noise,) + tuple(x.shape[1:]), generator=g)])
        return x.to(self.device)

    # ---- snapshots -------------------------------------------------------------------
    def _snapshot(self, epoch: int, batch: int, label: str) -> dict:
        _average_statistics(self.model)
        row = {"snapshot": label, "epoch": epoch, "step": self.step}
        if self.rank == 0:
            path = save_bn_buffers(self.model, self.out / "snapshots" / f"{label}.safetensors")
            row["file"] = str(path.relative_to(self.out))
            if self.evaluate is not None:
                self.model.eval()
                try:
                    row.update(self.evaluate(self.model))
                finally:
                    for _, bn in batchnorms(self.model):
                        bn.train()
                if self.metric not in row:
                    raise FaceForgeError(f"the evaluation returned no {self.metric!r} ({sorted(row)})")
                if self.best is None or row[self.metric] > self.best[self.metric]:
                    self.best = dict(row)
                    shutil.copyfile(path, self.out / "best.safetensors")
                if label != "baseline" and (self.best_finetuned is None
                                            or row[self.metric] > self.best_finetuned[self.metric]):
                    self.best_finetuned = dict(row)
            self.history.append(row)
            atomic_write_json(self.out / "state.json", {
                "config": asdict(self.cfg), "epoch": epoch, "batch": batch, "step": self.step,
                "history": self.history, "best": self.best, "best_finetuned": self.best_finetuned})
        return row

    def _resume(self) -> tuple[int, int]:
        state_path = self.out / "state.json"
        if not state_path.is_file():
            return 0, 0
        state = json.loads(state_path.read_text())
        if state["config"] != asdict(self.cfg):
            raise FaceForgeError("the output folder holds a run with another configuration; "
                                 "use a new output folder", state_path)
        last = state["history"][-1]
        load_bn_buffers(self.model, self.out / last["file"])
        self.step, self.history = state["step"], state["history"]
        self.best, self.best_finetuned = state["best"], state["best_finetuned"]
        return state["epoch"], state["batch"]

    def fit(self, stop_after_steps: int | None = None) -> dict:
        """Run (or resume) to the configured epochs; returns {history, best}."""
        c = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        epoch, batch = self._resume()
        if not self.history:  # step 0: the statistics as they came
            self._snapshot(0, 0, "baseline")
        with torch.no_grad():
            while epoch < c.epochs:
                order = epoch_order(len(self.images), c.seed, epoch)
                per_rank = len(order) // self.world
                order = order[self.rank * per_rank:(self.rank + 1) * per_rank]
                t0 = time.perf_counter()
                for b in progress(range(batch, self.steps_per_epoch), f"BN epoch {epoch + 1}/{c.epochs}",
                                  enabled=None if self.rank == 0 else False):
                    self.model(self._batch(epoch, np.arange(b * c.batch_size, (b + 1) * c.batch_size), order))
                    self.step += 1
                    if stop_after_steps is not None and self.step >= stop_after_steps:
                        return {**self._result(), "stopped_at": self.step}
                    if c.snapshot_every and self.step % c.snapshot_every == 0 and b + 1 < self.steps_per_epoch:
                        self._snapshot(epoch, b + 1, f"step-{self.step:06d}")
                epoch, batch = epoch + 1, 0
                row = self._snapshot(epoch, 0, f"epoch-{epoch:03d}")
                row["seconds"] = round(time.perf_counter() - t0, 2)
        if self.best is not None and self.rank == 0:
            load_bn_buffers(self.model, self.out / "best.safetensors")
        if self.rank == 0:  # the whole network with the chosen statistics, loadable as weights
            from safetensors.torch import save
            with atomic_write(self.out / "finetuned.safetensors", "wb") as fh:
                fh.write(save({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}))
        self.model.eval()
        return self._result()

    def _result(self) -> dict:
        """best: the best snapshot, the statistics as they came included (the model ends with
        it: fine-tuning never leaves a user worse off on their metric); best_finetuned: the best
        after at least one step, to compare variants by."""
        return {"history": self.history, "best": self.best, "best_finetuned": self.best_finetuned,
                "output": str(self.out)}


# ---- diagnostics ------------------------------------------------------------
def bn_relative_change(before: nn.Module, after: nn.Module) -> dict[str, np.ndarray]:
    """Per BatchNorm layer ‖P1 − P0‖ / ‖P0‖ of running mean and running var, in module order."""
    a, b = batchnorms(before), batchnorms(after)
    if [n for n, _ in a] != [n for n, _ in b] or any(x.num_features != y.num_features for (_, x), (_, y) in zip(a, b)):
        raise FaceForgeError("the two models have different BatchNorm layers")

    def rel(p0, p1):
        return float((p1 - p0).norm() / p0.norm().clamp_min(1e-12))
    return {"layers": [n for n, _ in a],
            "mean": np.array([rel(x.running_mean, y.running_mean) for (_, x), (_, y) in zip(a, b)]),
            "var": np.array([rel(x.running_var, y.running_var) for (_, x), (_, y) in zip(a, b)])}


@torch.no_grad()
def bn_activation_report(model: nn.Module, x: torch.Tensor, sample: int = 20000, seed: int = 0) -> dict:
    """For input batch x (eval mode): per BatchNorm layer, the mean NLL of its inputs under
    N(running_mean, running_var) per element, and a sample of the normalised inputs
    (x − μ)/σ of the first and last layers (their densities should look like N(0, 1))."""
    bns = batchnorms(model)
    nll, samples = [], {}
    g = torch.Generator().manual_seed(seed)
    ends = {bns[0][0], bns[-1][0]}

    def hook(name, bn):
        def fn(_m, inputs):
            t = inputs[0].detach().float()
            shape = (1, -1) + (1,) * (t.dim() - 2)
            mu, var = bn.running_mean.view(shape), bn.running_var.view(shape) + bn.eps
            nll.append(float((0.5 * torch.log(2 * math.pi * var) + (t - mu) ** 2 / (2 * var)).mean()))
            if name in ends:
                z = ((t - mu) / var.sqrt()).flatten().cpu()
                idx = torch.randperm(len(z), generator=g)[:sample]
                samples[name] = z[idx].numpy()
        return fn

    was = model.training
    model.eval()
    handles = [bn.register_forward_pre_hook(hook(n, bn)) for n, bn in bns]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {"layers": [n for n, _ in bns], "nll": np.array(nll), "normalised": samples}
