"""Training throughput: IResNet-50 + ArcFace at batch 128 through the Trainer's step,
against a plain fp32 PyTorch loop on the same model and the same images in the same run
(both timers cover fetching each batch, copying it to the device and the step, after one
warm-up batch). On CUDA the Trainer uses AMP + channels_last. Prints images/s, the ratio,
and peak memory; writes
bench/results/train_speed.json (train_speed_cuda.json on a GPU, with the device's name).

    python bench/train.py [--device cpu|cuda] [--steps 2] [--batch-size 128]
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from faceforge.core.files import atomic_write_json
from faceforge.models.backbones import create_backbone
from faceforge.models.heads import ArcFace, FCHead
from faceforge.train.trainer import TrainConfig, Trainer

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = 1000


class _Random(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.default_rng(i)
        return rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), int(i % CLASSES)


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trainer_speed(device: str, bs: int, steps: int) -> dict:
    torch.manual_seed(0)
    cfg = TrainConfig(output="/tmp/faceforge_bench_train", epochs=1, batch_size=bs, lr=0.1, device=device,
                      tensorboard=False, channels_last=device.startswith("cuda"), amp=True)
    t = Trainer(create_backbone("r50"), FCHead(512, CLASSES, ArcFace()), _Random(bs * (steps + 1)), cfg)
    loader = iter(t._loader(0, 0))
    images, labels, _ = next(loader)
    t.train_step(images, labels, accumulate=False)  # warm-up
    if t.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for images, labels, _ in loader:
        t.train_step(images, labels, accumulate=False)
    if t.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"images_per_s": round(bs * steps / dt, 2), "seconds": round(dt, 2), "amp": t.use_amp,
            "channels_last": cfg.channels_last, "peak_memory_mb": round(peak_mb(t.device), 1)}


def plain_speed(device: str, bs: int, steps: int) -> dict:
    torch.manual_seed(0)
    dev = torch.device(device)
    model, head = create_backbone("r50").to(dev), FCHead(512, CLASSES, ArcFace()).to(dev)
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.1, momentum=0.9, weight_decay=5e-4)
    # the same images as the Trainer's, fetched and copied to the device the plain way; as in
    # trainer_speed, the first batch warms up and the timer covers fetching, copying and stepping

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        x = ((images.to(dev).permute(0, 3, 1, 2).float() / 255.0) - 0.5) / 0.5
        loss = head(model(x), labels.to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()

    loader = iter(torch.utils.data.DataLoader(_Random(bs * (steps + 1)), batch_size=bs))
    step(*next(loader))
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for images, labels in loader:
        step(images, labels)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"images_per_s": round(bs * steps / dt, 2), "seconds": round(dt, 2), "peak_memory_mb": round(peak_mb(dev), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    plain = plain_speed(args.device, args.batch_size, args.steps)
    ours = trainer_speed(args.device, args.batch_size, args.steps)
    res = {"model": "r50 + ArcFace (1000 classes)", "batch_size": args.batch_size, "device": args.device,
           "torch_threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
           "baseline_plain_fp32_loop": plain, "faceforge_trainer": ours,
           "ratio_vs_plain": round(ours["images_per_s"] / plain["images_per_s"], 3)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = RESULTS / ("train_speed_cuda.json" if args.device.startswith("cuda") else "train_speed.json")
    atomic_write_json(result, res)
    print(f"plain fp32 loop: {plain['images_per_s']} img/s; Trainer step: {ours['images_per_s']} img/s "
          f"(×{res['ratio_vs_plain']}); peak memory {ours['peak_memory_mb']} MB")
    print(json.dumps({"written": str(result)}))


if __name__ == "__main__":
    main()
