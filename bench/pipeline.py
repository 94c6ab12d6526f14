"""Whole pipelines end to end, as a user runs them, on the same image files.

Every row is one whole process timed from launch to exit (imports, model loading, decoding,
detection, landmarks, alignment, embedding, writing), on the same folder of LFW photos:

  baseline    the face_recognition-style loop: one image at a time, dlib HOG (upsample 1) →
              5-point shape → compute_face_descriptor (face_recognition's own models)
  api loop    FaceForge's unbatched loop: `faceforge.represent(path)` per file
  embed       `faceforge embed FOLDER -o OUT.parquet -m MODEL` (batched, reading ahead)

Each row runs with the machine's cores (2 here) and pinned to one core (taskset); the
ratio of every row is its wall time against the baseline's, measured in the same run. Also
recorded: `faceforge --help` and `faceforge verify a b` wall times, per-stage milliseconds of
the batched pipeline on the first files (extra columns, not a measurement of the pipeline),
and how far the float SFace port's embeddings are from OpenCV's on every face of the run.
Writes bench/results/pipeline.json.

    python bench/pipeline.py [--sizes 1000 10000] [--rows baseline embed:sface ...] [--cores 2 1]
    python bench/pipeline.py --startup-only   # the --help and verify timings again
    python bench/pipeline.py --rows embed:sface@cpu embed:sface@cuda --baseline embed:sface@cpu \
        --sizes 1000 10000 --cores 16 --no-extras --result bench/results/pipeline_gpu.json   # on a GPU

A row `embed:MODEL@DEVICE` passes `--device DEVICE`. Where LFW holds fewer photos than a size
asks for, the folder repeats them under other names and records how many are distinct.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "pipeline.json"
DATA = HERE / "data" / "pipeline"
BASELINE = "face_recognition-style loop (dlib HOG + 5 points + ResNet, one image at a time)"
ROWS = ("baseline", "api:sface", "embed:sface", "embed:sface-int8", "embed:dlib-r29")


def sample_folder(n: int) -> Path:
    """n LFW photos as identity folders of links: one photo per person while there are
    people enough (5,749), then further photos of the same people, spread over the set;
    past the photos there are, the same photos again under other names (`_copyK`)."""
    out = DATA / f"lfw_{n}"
    if out.is_dir() and len(list(out.glob("*/*.jpg"))) == n:
        return out
    root = lfw_dir() / "images"
    people = sorted(p for p in root.iterdir() if p.is_dir())
    if not people:
        raise SystemExit(f"LFW not found at {root} (set FACEFORGE_LFW)")
    per = [sorted(p.glob("*.jpg")) for p in people]
    rounds, picked = 0, []
    while len(picked) < n and rounds < max(map(len, per)):
        left = [files[rounds] for files in per if len(files) > rounds]
        take = min(n - len(picked), len(left))
        picked += [left[i] for i in np.linspace(0, len(left) - 1, take).round().astype(int)]
        rounds += 1
    files, k = [(f, f.name) for f in picked], 1
    while picked and len(files) < n:
        files += [(f, f"{f.stem}_copy{k}.jpg") for f in picked[:n - len(files)]]
        k += 1
    for f, name in files:
        (out / f.parent.name).mkdir(parents=True, exist_ok=True)
        link = out / f.parent.name / name
        if not link.exists():
            link.symlink_to(f.resolve())
    return out


def distinct_photos(folder: Path) -> int:
    return len({p.resolve() for p in folder.glob("*/*.jpg")})


def baseline_loop(folder: Path, output: Path) -> None:
    """What a face_recognition user writes (its API is these three dlib calls)."""
    import dlib

    from faceforge.core.resources import package_file
    from faceforge.io.images import list_images, load_image
    models = ("face_recognition_models", "models")
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(package_file(*models, "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(package_file(*models, "dlib_face_recognition_resnet_model_v1.dat"))
    embs = []
    for path in list_images(folder):
        img = load_image(path)
        embs += [np.asarray(rec.compute_face_descriptor(img, sp(img, r))) for r in det(img, 1)]
    np.save(output, np.asarray(embs, np.float32))


def api_loop(folder: Path, output: Path, model: str) -> None:
    """The one-line call, once per file, as a user without a folder command writes it."""
    import faceforge
    from faceforge.core.errors import NoFaceError
    from faceforge.io.images import list_images
    embs = []
    for path in list_images(folder):
        try:
            embs += [r.embedding for r in faceforge.represent(path, model=model, detector="yunet")]
        except NoFaceError:
            pass
    np.save(output, np.asarray(embs, np.float32))


def timed_process(cmd: list[str], cores: int, **env_extra: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(cores), **env_extra}
    pin = ["taskset", "-c", ",".join(str(c) for c in range(cores))] if cores < (os.cpu_count() or 1) else []
    t0 = time.perf_counter()
    res = subprocess.run(pin + cmd, env=env, capture_output=True, text=True, cwd=HERE.parent)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return wall


def run_row(row: str, folder: Path, cores: int) -> dict:
    work = DATA / "out"
    work.mkdir(parents=True, exist_ok=True)
    kind, _, model = row.partition(":")
    model, _, device = model.partition("@")
    stem = f"{folder.name}_{kind}_{model or 'dlib'}{'_' + device if device else ''}_{cores}"
    if kind == "embed":
        out = work / f"{stem}.parquet"
        wall = timed_process([sys.executable, "-m", "faceforge.cli.main", "embed", str(folder), "-o", str(out),
                              "-m", model, "--detector", "yunet", "--overwrite", "--json",
                              *(["--device", device] if device else [])], cores)
        import pyarrow.parquet as pq
        faces = pq.read_table(out, columns=["path"]).num_rows
    else:
        out = work / f"{stem}.npy"
        wall = timed_process([sys.executable, __file__, "--loop", kind, str(folder), str(out), model or "-"], cores)
        faces = len(np.load(out))
    return {"row": row, "cores": cores, "seconds": round(wall, 2), "faces": int(faces), "output": str(out)}


def startup(cores: int) -> dict:
    """Median wall times of `faceforge --help` and of `faceforge verify a b` (two LFW photos);
    sface once more with an empty cache each time (the first run builds the network from the
    ONNX file and caches it; the others read the cache)."""
    a, b = sorted((lfw_dir() / "images" / "Aaron_Peirsol").glob("*.jpg"))[:2]
    cli = [sys.executable, "-m", "faceforge.cli.main"]
    out = {"help_s": float(np.median([timed_process(cli + ["--help"], cores) for _ in range(5)]))}
    for model in ("sface", "sface-int8", "dlib-r29"):
        out[f"verify_{model}_s"] = float(np.median([timed_process(cli + ["verify", str(a), str(b), "-m", model],
                                                                  cores) for _ in range(3)]))
    cold = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(timed_process(cli + ["verify", str(a), str(b), "-m", "sface"], cores, FACEFORGE_CACHE=cache))
    out["verify_sface_empty_cache_s"] = float(np.median(cold))
    return {k: round(v, 3) for k, v in out.items()}


def stages(folder: Path, n: int = 200) -> dict:
    """Milliseconds per image of each stage of the batched yunet + sface pipeline, in process."""
    from faceforge.io.images import list_images, load_image
    from faceforge.pipeline import FacePipeline
    pipe = FacePipeline(detector="yunet", embedder="sface", prefetch=False)
    files = list_images(folder)[:n]
    t = [time.perf_counter()]
    images = [load_image(f) for f in files]
    t.append(time.perf_counter())
    faces = [pipe.usable_faces(im) for im in images]
    t.append(time.perf_counter())
    crops = np.stack([pipe.embedder.align(im, f) for im, fs in zip(images, faces) for f in fs])
    t.append(time.perf_counter())
    pipe.embedder.embed_crops(crops)
    t.append(time.perf_counter())
    names = ("decode", "detect", "align", "embed")
    return {"images": len(files), "faces": len(crops),
            **{f"{k}_ms_per_image": round((t[i + 1] - t[i]) / len(files) * 1000, 2) for i, k in enumerate(names)}}


def port_agreement(a: str, b: str) -> dict:
    """Per-face cosine between two runs' embeddings of the same faces (sface vs sface-int8)."""
    import pyarrow.parquet as pq
    ta, tb = (pq.read_table(p, columns=["path", "face_index", "embedding"]).to_pylist() for p in (a, b))
    eb = {(r["path"], r["face_index"]): np.asarray(r["embedding"]) for r in tb}
    cos = [float(np.dot(r["embedding"], eb[(r["path"], r["face_index"])])) for r in ta
           if (r["path"], r["face_index"]) in eb]
    return {"faces": len(cos), "min_cosine": round(min(cos), 7), "mean_cosine": round(float(np.mean(cos)), 8)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000])
    ap.add_argument("--rows", nargs="+", default=list(ROWS))
    ap.add_argument("--cores", type=int, nargs="+", default=[os.cpu_count() or 1, 1])
    ap.add_argument("--startup-only", action="store_true", help="measure --help and verify again, nothing else")
    ap.add_argument("--baseline", default="baseline", help="the row every ratio is against")
    ap.add_argument("--result", type=Path, default=RESULT)
    ap.add_argument("--no-extras", action="store_true", help="leave out the start-up, stage and port records")
    ap.add_argument("--loop", nargs=4, metavar=("KIND", "FOLDER", "OUT", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loop:  # a row's own process
        kind, folder, out, model = args.loop
        baseline_loop(Path(folder), Path(out)) if kind == "baseline" else api_loop(Path(folder), Path(out), model)
        return

    import torch
    result = args.result
    result.parent.mkdir(parents=True, exist_ok=True)
    res = json.loads(result.read_text()) if result.exists() and "runs" in json.loads(result.read_text()) else {}
    res.update(machine={"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
               baseline=BASELINE if args.baseline == "baseline" else args.baseline)
    if args.startup_only:
        res["startup"] = startup(args.cores[0])
        atomic_write_json(result, res)
        print(json.dumps({"startup": res["startup"], "written": str(result)}, indent=1))
        return
    runs = {(r["images"], r["row"], r["cores"]): r for r in res.get("runs", [])}
    # the float SFace network is built from its ONNX file once and cached: not in any row's time
    subprocess.run([sys.executable, "-c", "from faceforge.models import create_embedder; "
                    "create_embedder('sface', device='cpu')"], check=True)
    for n in args.sizes:
        folder = sample_folder(n)
        for cores in args.cores:
            for row in args.rows:
                r = run_row(row, folder, cores)
                runs[(n, row, cores)] = {"images": n, "distinct_photos": distinct_photos(folder), **r}
                base = runs.get((n, args.baseline, cores))
                if base:
                    for (m, _, c), other in runs.items():
                        if m == n and c == cores:
                            other["ratio_vs_baseline"] = round(base["seconds"] / other["seconds"], 2)
                res["runs"] = [{k: v for k, v in r.items() if k != "output"} for r in runs.values()]
                atomic_write_json(result, res)  # each row kept as soon as it is measured
                print(f"{n:6d} images  {cores} core(s)  {row:18s} {r['seconds']:8.2f} s  {r['faces']:6d} faces"
                      + (f"  {runs[(n, row, cores)].get('ratio_vs_baseline', '-')}× baseline" if base else ""),
                      flush=True)
        a, b = runs.get((n, "embed:sface", args.cores[0])), runs.get((n, "embed:sface-int8", args.cores[0]))
        if a and b and "output" in a and "output" in b:
            res.setdefault("sface_port_vs_opencv", {})[str(n)] = port_agreement(a["output"], b["output"])
    res["runs"] = [{k: v for k, v in r.items() if k != "output"} for r in runs.values()]
    if not args.no_extras:
        res["startup"] = startup(args.cores[0])
        res["stages_yunet_sface"] = stages(sample_folder(args.sizes[0]))
    atomic_write_json(result, res)
    print(json.dumps({"startup": res.get("startup"), "stages": res.get("stages_yunet_sface"),
                      "port": res.get("sface_port_vs_opencv"), "written": str(result)}, indent=1))


if __name__ == "__main__":
    main()
