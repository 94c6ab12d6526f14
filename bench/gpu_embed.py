"""Embedding speed of IResNet-100 and MobileFaceNet on a GPU, float32 against fp16 and bf16.

Real aligned 112×112 LFW crops (YuNet → ArcFace template) go through the public API as a user
calls it, `load_embedder(model, device="cuda", precision=...).embed_raw(crops)` on uint8 NumPy
crops (host→device copy, normalisation, forward, copy back), and through the bare network on
crops already on the device. The baseline is the same model in float32 through the same call,
in the same run. Each network's FLOPs per face are counted by torch's FLOP counter; the share of
the roofline is the network's FLOP/s against a large matrix product of the same type measured
in the same run (the best the chip does on dense work). The weights are random (speed does not
depend on their values), with BatchNorm statistics recomputed on the crops so that activations
have a trained network's scale. Writes bench/results/gpu_embed.json with the device's name.

    python bench/gpu_embed.py [--faces 4096] [--batch-size 512] [--photos 256]
    python bench/gpu_embed.py --device cpu --faces 64 --batch-size 32   # float32 only: a check of the script
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.models.backbones import create_backbone
from faceforge.models.cards import ModelCard, backbone_input, card_path
from faceforge.models.embedders import TrainedEmbedder, load_embedder
from faceforge.models.export import export_safetensors
from faceforge.train.bn_finetune import recompute_bn_statistics
from faceforge.train.trainer import arcface_preprocess

RESULT = Path(__file__).resolve().parent / "results" / "gpu_embed.json"
MODELS = ("r100", "mbf")
DTYPES = {p: getattr(torch, name) for p, name in TrainedEmbedder.PRECISIONS.items()}  # fp32 first


def real_crops(photos: int) -> np.ndarray:
    """Aligned crops of the largest face of the first `photos` LFW photos (one per person)."""
    from faceforge.io.images import load_image
    from faceforge.pipeline import FacePipeline
    pipe = FacePipeline(detector="yunet", embedder="sface", device="cpu", prefetch=False)
    crops = []
    for person in sorted(p for p in (lfw_dir() / "images").iterdir() if p.is_dir())[:photos]:
        image = load_image(sorted(person.glob("*.jpg"))[0])
        faces = pipe.usable_faces(image)
        if faces:
            crops.append(pipe.embedder.align(image, max(faces, key=lambda f: f.area)))
    if not crops:
        raise SystemExit(f"no LFW faces found under {lfw_dir()}")
    return np.stack(crops)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, repeats: int, warmup: int = 1) -> float:
    """Seconds per call, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync()
    return (time.perf_counter() - t0) / repeats


def matmul_peak(dtype: torch.dtype, device: str, n: int = 8192) -> float:
    """FLOP/s of an n×n×n matrix product in `dtype` on random data. For float32 with TF32
    on, as cuDNN runs float32 convolutions by PyTorch's default: the ceiling of that row."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    n = n if device.startswith("cuda") else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n ** 3 / _timed(lambda: a @ b, 10, warmup=3)


def flops_per_face(model: torch.nn.Module) -> float:
    x = torch.zeros(1, 3, 112, 112)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--photos", type=int, default=256)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here (--device cpu checks the script in float32)")
    precisions = tuple(DTYPES) if on_gpu else ("fp32",)
    base = real_crops(args.photos)
    crops = np.ascontiguousarray(np.resize(base, (args.faces, *base.shape[1:])))
    peaks = {p: matmul_peak(DTYPES[p], args.device) for p in precisions}
    res = {"gpu": torch.cuda.get_device_name(0) if on_gpu else None, "device": args.device,
           "torch": torch.__version__, "faces": args.faces,
           "distinct_crops": len(base), "batch_size": args.batch_size,
           "matmul_peak_tflops": {p: round(v / 1e12, 1) for p, v in peaks.items()},
           "baseline": "the same model in float32 through the same call",
           "fp32_means": "float32 tensors; cuDNN convolutions in TF32 (PyTorch's default)" if
           torch.backends.cudnn.allow_tf32 else "float32 throughout", "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            torch.manual_seed(0)
            net = create_backbone(name)
            flops = flops_per_face(net)
            # statistics for these random weights from real faces, so that activations keep
            # a trained network's scale (a fresh IResNet-100 overflows to NaN in float32)
            calib = arcface_preprocess(base[:64])
            net = recompute_bn_statistics(net.to(args.device), calib.to(args.device).split(16)).cpu()
            weights = export_safetensors(net, Path(tmp) / f"{name}.safetensors")
            ModelCard(name=f"bench-{name}", input=backbone_input(name, 112), embedding_dim=512, backbone=name,
                      weights=weights.name).save(card_path(weights))
            rows, ref = {}, None
            for precision in precisions:
                emb = load_embedder(weights, device=args.device, precision=precision, batch_size=args.batch_size)
                api_s = _timed(lambda: emb.embed_raw(crops), 2)
                x = emb.preprocess(crops[:args.batch_size])
                with torch.inference_mode():
                    net_s = _timed(lambda: emb.model(x), 10, warmup=2) * args.faces / args.batch_size
                a = emb.embed_crops(crops[:256])
                ref = a if ref is None else ref  # float32 comes first
                rows[precision] = {
                    "api_faces_per_s": round(args.faces / api_s, 1),
                    "network_faces_per_s": round(args.faces / net_s, 1),
                    "network_tflops": round(flops * args.faces / net_s / 1e12, 2),
                    "share_of_matmul_peak": round(flops * args.faces / net_s / peaks[precision], 4),
                    "min_cosine_vs_fp32": round(float(np.sum(a * ref, axis=1).min()), 6)}
            for r in rows.values():
                r["api_ratio_vs_fp32"] = round(r["api_faces_per_s"] / rows["fp32"]["api_faces_per_s"], 2)
            res["models"][name] = {"gflops_per_face": round(flops / 1e9, 3), "rows": rows}
            for p, r in rows.items():
                print(f"{name:5s} {p}: API {r['api_faces_per_s']:9.0f} faces/s (×{r['api_ratio_vs_fp32']} fp32)  "
                      f"network {r['network_faces_per_s']:9.0f} faces/s = {r['network_tflops']:6.1f} TFLOP/s, "
                      f"{100 * r['share_of_matmul_peak']:.1f} % of the {p} matmul peak", flush=True)
    result = RESULT if on_gpu else RESULT.with_name("gpu_embed_cpu_check.json")
    result.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, res)
    print(json.dumps({"matmul_peak_tflops": res["matmul_peak_tflops"], "written": str(result)}))


if __name__ == "__main__":
    main()
