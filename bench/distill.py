"""Knowledge distillation on CPU, identity-disjoint from the evaluation: students train on
the LFW training identities of bench/data/lfw_split with `faceforge train configs/distill_*.yaml`
and are evaluated, with their teachers, on the images of identities no split trained on
(allpairs_test.txt: all-pairs TPR@FPR 1e-6…1e-1) and on test_pairs.txt (10-fold accuracy).

Stages (each skips what is already done, and `faceforge train` resumes a killed run):
  prepare   align the LFW identities with ≥ 4 images as ArcFace 112 crops and dlib 150 chips
  teachers  `faceforge embed` the training photos with dlib-r29 and sface (their own pipeline)
  unlabelled  faces without identities for embedding distillation: the landmarks5 crops (LFW
            crops of people outside the validation and test identities, and the AFLW crops),
            aligned by their hand-labelled points, and the faces YuNet finds in the face-free
            photo set; each teacher's embeddings of them are appended to its Parquet
  train     `faceforge train` the teacher's FC, then every student config
  speed     training images/s with no teacher, a precomputed one and an online one
  eval      export each student, embed the evaluation images with every model, score,
            time each model's forward, write bench/results/distill.json and distill_roc.png
  table     the results as Markdown; plot: distill_roc.png again from the JSON

    python bench/distill.py [--stage prepare teachers train eval] [--students kd_dlib ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import run_cli, train_output  # bench/common.py
from faceforge.core.data import lfw_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.lfw import detect_lfw_faces, embed_faces
from faceforge.evaluate.plots import plot_roc, thin_roc
from faceforge.evaluate.verification import DEFAULT_FPRS, RocCurve, all_pairs_scores, kfold_accuracy, verification_report
from faceforge.models.embedders import create_embedder
from faceforge.vision.detectors import create_detector
from faceforge.vision.prepare import prepare_aligned_dataset

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNS = HERE / "results" / "runs_distill"
SPLIT = HERE / "data" / "lfw_split"
RESULT = HERE / "results" / "distill.json"
CACHE = Path.home() / ".cache" / "faceforge"
TEMPLATES = {"arcface_112": ("arcface", 112), "dlib-chip_150": ("dlib-chip", 150)}
TEACHERS = ("dlib-r29", "sface")
STUDENTS = {  # name → (config, what it is)
    "none": ("configs/distill_mbf_none.yaml", "MBF, no teacher (the same recipe)"),
    "kd_dlib": ("configs/distill_mbf_kd_dlib.yaml", "MBF, logit KD from dlib-r29 (FC on the training identities)"),
    "emb_dlib": ("configs/distill_mbf_emb_dlib.yaml", "MBF, ArcFace + embedding distillation from dlib-r29"),
    "emb_sface": ("configs/distill_mbf_emb_sface.yaml",
                  "MBF, ArcFace + embedding distillation from sface (precomputed)"),
    "emb_ensemble": ("configs/distill_mbf_emb_ensemble.yaml",
                     "MBF, ArcFace + embedding distillation from sface + dlib-r29"),
    "kd_feat_dlib": ("configs/distill_mbf_kd_feat_dlib.yaml",
                     "MBF, logit KD + early-feature MSE from dlib-r29 (online)"),
    "emb_dlib_unlabelled": ("configs/distill_mbf_emb_dlib_unlabelled.yaml",
                            "MBF, embedding distillation from dlib-r29 + unlabelled faces"),
    "dml_sync": ("configs/distill_dml_sync.yaml", "MBF, deep mutual learning, synchronous (model 1 of 2)"),
    "dml_seq": ("configs/distill_dml_seq.yaml", "MBF, deep mutual learning, sequential (model 1 of 2)"),
}


def prepare() -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    for name, (template, size) in TEMPLATES.items():
        root = CACHE / "lfw_aligned" / f"{template}_{size}"
        prepare_aligned_dataset(lfw_dir() / "images", root, create_detector("yunet"), size, template, min_images=4)
        link = RUNS / f"lfw_{name}"
        if not link.exists():
            link.symlink_to(root, target_is_directory=True)
    photos = CACHE / "lfw_train_images"  # the training identities' photos, for the teachers
    for rel in (SPLIT / "train.txt").read_text().split():
        dst = photos / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(lfw_dir() / "images" / rel)


def teachers() -> None:
    for model in TEACHERS:
        out = RUNS / f"teacher_{model}.parquet"
        if not out.exists():
            run_cli("embed", str(CACHE / "lfw_train_images"), "-o", str(out), "-m", model, "--select", "central",
                 "--device", "cpu")


def unlabelled(min_score: float = 0.9, min_side: int = 40) -> None:
    """Aligned crops of faces without identities under runs_distill/unlabelled/<source>/, and
    teacher_<model>_unlabelled.parquet: the teacher's rows for the training photos followed by
    its embeddings of these faces (found by <source>/<stem>, as the Trainer looks them up)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from faceforge.core.data import shared_data_dir
    from faceforge.io.embeddings import embedding_matrix, read_embeddings
    from faceforge.io.images import load_image
    from faceforge.vision.align import align_face
    from faceforge.vision.face import Face
    root = CACHE / "unlabelled_arcface_112"
    link = RUNS / "unlabelled"
    outputs = [RUNS / f"teacher_{m}_unlabelled.parquet" for m in TEACHERS]
    if all(p.exists() for p in outputs):
        return
    held_out = {n.split("/")[0] for f in ("val.txt", "test.txt", "allpairs_test.txt")
                for n in (SPLIT / f).read_text().split()}
    marks = shared_data_dir() / "landmarks5"
    faces: list[tuple[str, np.ndarray, Face]] = []  # (key, image, face)
    for list_file, source in (("train.txt", "landmarks5_lfw"), ("test.txt", "landmarks5_aflw")):
        for line in (marks / list_file).read_text().splitlines():
            rel, *v = line.split()
            stem = Path(rel).stem
            if source == "landmarks5_lfw" and stem.rsplit("_", 1)[0] in held_out:
                continue
            pts = np.array(v, np.float32).reshape(2, 5).T  # x1..x5 then y1..y5
            img = load_image(marks / rel)
            box = np.array([0, 0, img.shape[1], img.shape[0]], np.float32)
            faces.append((f"{source}/{stem}", img, Face(box, 1.0, pts)))
    detector = create_detector("yunet")
    for photo in sorted((shared_data_dir() / "nonface_imagenet").glob("*.jpg")):
        img = load_image(photo)
        for k, f in enumerate(detector.detect(img)):
            if f.score >= min_score and min(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= min_side:
                faces.append((f"imagenet_faces/{photo.stem}_f{k}", img, f))
    for key, img, f in faces:
        dst = root / f"{key}.jpg"
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(align_face(img, f.landmarks, "arcface", 112)).save(dst, quality=95)
    if not link.exists():
        link.symlink_to(root, target_is_directory=True)
    counts = {s: sum(k.startswith(s + "/") for k, _, _ in faces)
              for s in ("landmarks5_lfw", "landmarks5_aflw", "imagenet_faces")}
    print(f"unlabelled faces: {counts}")
    for model, out in zip(TEACHERS, outputs):
        emb = create_embedder(model, device="cpu")
        vectors = np.concatenate([emb.embed_crops(np.stack([emb.align(img, f) for _, img, f in faces[i:i + 64]]))
                                  for i in range(0, len(faces), 64)])
        base = read_embeddings(RUNS / f"teacher_{model}.parquet")
        first = np.asarray(base.column("face_index").to_numpy()) == 0
        keep = base.filter(pa.array(first))
        paths = keep.column("path").to_pylist() + [f"{k}.jpg" for k, _, _ in faces]
        matrix = np.concatenate([embedding_matrix(keep), vectors]).astype(np.float32)
        table = pa.table({"path": paths, "face_index": pa.array(np.zeros(len(paths), np.int32)),
                          "embedding": pa.array(list(matrix), type=pa.list_(pa.float32()))})
        pq.write_table(table, out)
    atomic_write_json(RUNS / "unlabelled.json", {"faces": len(faces), "by_source": counts,
                                                 "imagenet_detection": {"min_score": min_score, "min_side": min_side},
                                                 "excluded_identities": "LFW validation and test identities"})


def train(students: list[str]) -> None:
    runs = {"teacher_fc_dlib": "configs/distill_teacher_fc_dlib.yaml", **{s: STUDENTS[s][0] for s in students}}
    for name, cfg in runs.items():
        if (RUNS / f"{name}.train.json").exists():
            continue
        t0 = time.perf_counter()
        res = run_cli("train", cfg)
        atomic_write_json(RUNS / f"{name}.train.json", {**res, "wall_seconds": round(time.perf_counter() - t0, 1)})
        print(f"{name}: {res['steps']} steps, best {res['best']}")


def speed(steps: int = 15) -> None:
    """Training images/s of the MBF student through the Trainer: no teacher, the precomputed
    dlib-r29 teacher (a table lookup), and dlib-r29 running online on its own 150 px chips
    (the teacher's forward cost), the same batches for each."""
    from faceforge.train.config import build_trainer, load_yaml
    base = load_yaml(REPO / "configs/distill_mbf_kd_dlib.yaml")
    base["val"] = {}
    variants = {
        "no teacher": None,
        "precomputed dlib-r29 (KD)": base["distill"],
        "online dlib-r29 on its own chips (KD)": {
            "teacher": {"checkpoint": base["distill"]["teacher"]["head"], "root": str(RUNS / "lfw_dlib-chip_150")},
            "kd": base["distill"]["kd"]},
    }
    out = {}
    for name, section in variants.items():
        cfg = {**base, "distill": section, "train": {**base["train"], "output": str(RUNS / "speed"),
                                                      "checkpoint_every": 0}}
        if section is None:
            cfg.pop("distill")
        t = build_trainer(cfg)
        loader = iter(t._loader(0, 0))
        images, labels, index = next(loader)
        t.train_step(images, labels, False, index)  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            images, labels, index = next(loader)
            t.train_step(images, labels, False, index)
        out[name] = round(steps * t.cfg.batch_size / (time.perf_counter() - t0), 1)
        print(f"{name:45s} {out[name]} images/s")
    base_ips = out["no teacher"]
    atomic_write_json(RUNS / "speed.json", {"images_per_s": out, "ratio_vs_no_teacher": {
        k: round(v / base_ips, 3) for k, v in out.items()}, "steps": steps, "batch_size": 64,
        "machine": {"torch_threads": torch.get_num_threads(), "device": "cpu"}})


def _model_speed(embedder, crops: np.ndarray, batch: int = 64) -> float:
    """Faces per second of the model alone on aligned crops (after one warm-up batch)."""
    embedder.embed_crops(crops[:batch])
    t0 = time.perf_counter()
    for i in range(0, len(crops), batch):
        embedder.embed_crops(crops[i:i + batch])
    return len(crops) / (time.perf_counter() - t0)


def evaluate(students: list[str], limit: int | None = None) -> None:
    names = (SPLIT / "allpairs_test.txt").read_text().split()[:limit]
    ids = np.array([n.split("/")[0] for n in names])
    index = {n: i for i, n in enumerate(names)}
    pairs = [p for p in (line.split() for line in (SPLIT / "test_pairs.txt").read_text().splitlines() if line.strip())
             if p[0] in index and p[1] in index]
    pa, pb = np.array([index[a] for a, _, _ in pairs]), np.array([index[b] for _, b, _ in pairs])
    same = np.array([s == "1" for _, _, s in pairs])
    folds = np.arange(len(pairs)) % 10
    images, faces, missing = detect_lfw_faces(lfw_dir(), names, create_detector("yunet"), sys.stderr.isatty())
    found = [n for n in names if n in faces]
    models = {"dlib-r29 (teacher)": "dlib-r29", "sface (teacher)": "sface",
              "sface + dlib-r29 (teacher ensemble)": "sface+dlib-r29"}
    crops_test = {}
    for s in students:
        best = _best_checkpoint(s)
        if best.exists():
            models[STUDENTS[s][1]] = _export(s, best)
            crops_test[STUDENTS[s][1]] = _crop_accuracy(best)
    rows, curves, vectors = [], {}, {}
    for label, model in models.items():
        emb = create_embedder(model, device="cpu")
        if model == "sface+dlib-r29":  # what the ensemble embedder computes: its members' unit vectors / √2
            v = np.concatenate([vectors["sface"], vectors["dlib-r29"]], axis=1) / np.sqrt(2)
        else:
            v = embed_faces(emb, images, faces, found, 64)
        vectors[model] = v
        full = np.zeros((len(names), v.shape[1]), np.float32)
        full[[index[n] for n in found]] = v
        ok = np.isin(pa, [index[n] for n in found]) & np.isin(pb, [index[n] for n in found])
        acc = kfold_accuracy(np.sum(full[pa[ok]] * full[pb[ok]], axis=1), same[ok], folds[ok])
        keep = np.array([n in faces for n in names])
        scores, same_all = all_pairs_scores(full[keep], ids[keep])
        report, curve = verification_report(scores, same_all)
        report.pop("distributions")
        from faceforge.evaluate.lfw import aligned_crops
        speed = _model_speed(emb, aligned_crops(emb, images, faces, found[:512]))
        gallery = _gallery(full[keep], ids[keep])
        rows.append({"model": label, "source": str(model), "test_pairs_accuracy": acc, "gallery": gallery,
                     "test_pairs_accuracy_on_training_crops": crops_test.get(label), "all_pairs": report,
                     "faces_per_s": round(speed, 1)})
        curves[label] = curve
        t = report["tpr_at_fpr"]
        print(f"{label:60s} acc {100 * acc['accuracy_mean']:.2f}  top-1/3 recall @ P 99.9 % "
              f"{100 * gallery['top1_at_precision_0.999']['recall']:.2f} / "
              f"{100 * gallery['top3_at_precision_0.999']['recall']:.2f}  " +
              " ".join(f"{100 * t[f'{f:g}']['tpr']:6.2f}" for f in DEFAULT_FPRS) + f"  {speed:.0f} faces/s")
        del scores, same_all
    for row, curve in zip(rows, curves.values()):
        fpr, tpr = thin_roc(curve, 150)
        row["roc"] = {"fpr": [float(f"{x:.4g}") for x in fpr], "tpr": [round(float(x), 5) for x in tpr]}
    # A student trained on another machine (its checkpoint is not here) keeps its earlier row,
    # its curve and its training record: the table grows run by run instead of losing rows.
    previous = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    labels = [STUDENTS[s][1] for s in STUDENTS]
    order = [m for m in models if m not in labels] + labels  # the teachers, then the students
    rows += [r for r in previous.get("rows", []) if r["model"] not in models]
    rows.sort(key=lambda r: order.index(r["model"]) if r["model"] in order else len(order))
    plot(rows, curves)
    speeds = json.loads((RUNS / "speed.json").read_text()) if (RUNS / "speed.json").exists() \
        else previous.get("training_speed")
    training = {k: v for k, v in previous.get("training", {}).items()}
    training.update({p.name.removesuffix(".train.json"): _training_record(json.loads(p.read_text()))
                     for p in RUNS.glob("*.train.json")})
    atomic_write_json(RESULT, {
        "benchmark": "distillation on the LFW training identities, evaluated on identities no split trained on",
        "evaluation": {"all_pairs_list": "bench/data/lfw_split/allpairs_test.txt", "images": len(names),
                       "no_face": len(missing), "pairs_10_fold": "bench/data/lfw_split/test_pairs.txt"},
        "rows": rows, "training_speed": speeds,
        "training": training,
        "machine": {"torch_threads": torch.get_num_threads(), "device": "cpu"}})


def plot(rows: list[dict], curves: dict[str, RocCurve] | None = None) -> None:
    """distill_roc.png: this run's curves, and the kept rows' from their thinned copies in the
    JSON (a row from before the copies were kept has none: it is in the table only)."""
    curves = curves or {}
    drawn = {r["model"]: RocCurve(np.array(r["roc"]["fpr"]), np.array(r["roc"]["tpr"]), np.array([]))
             for r in rows if r["model"] not in curves and "roc" in r}
    curves = {r["model"]: curves.get(r["model"], drawn.get(r["model"])) for r in rows}
    plot_roc({k: c for k, c in curves.items() if c is not None}, HERE / "results" / "distill_roc.png",
             "LFW identities no split trained on: all pairs")


def _training_record(run: dict) -> dict:
    return {"wall_seconds": run["wall_seconds"], "steps": run["steps"], "best": run["best"],
            "images_per_s": [h.get("images_per_s") for h in run["history"]]}


def _gallery(emb: np.ndarray, ids: np.ndarray) -> dict:
    """The reference's identification table on the evaluation identities: the first three
    images of every person with at least four enrolled, the others probes; top-1 and top-3
    decisions at the lowest threshold whose precision reaches 99.9 %."""
    from faceforge.evaluate.identification import topk_decisions
    rank = np.zeros(len(ids), int)
    for person in np.unique(ids):
        rank[ids == person] = np.arange((ids == person).sum())
    big = np.isin(ids, [p for p, n in zip(*np.unique(ids, return_counts=True)) if n >= 4])
    g, q = big & (rank < 3), big & (rank >= 3)
    out = {"gallery_images": int(g.sum()), "probes": int(q.sum()), "people": int(len(np.unique(ids[g])))}
    for k in (1, 3):
        out[f"top{k}_at_precision_0.999"] = topk_decisions(emb[g], ids[g], emb[q], ids[q], k) \
            .threshold_for_precision(0.999)
    return out


def _best_checkpoint(student: str) -> Path:
    """The best epoch of a student's run (a mutual-learning run: its first model's own)."""
    out = train_output(STUDENTS[student][0])
    return out / "model1" / "best.pt" if (out / "model1").is_dir() else out / "best.pt"


def _crop_accuracy(checkpoint: Path) -> dict:
    """10-fold test-pair accuracy on the aligned crops training used (VerificationCallback),
    the measure of bench/train_lfw.py's from-scratch 86.3 %."""
    from faceforge.evaluate.callbacks import VerificationCallback
    from faceforge.models.backbones.registry import create_untrained_backbone
    from faceforge.train.checkpoint import load_checkpoint
    from faceforge.train.trainer import arcface_preprocess
    ck = load_checkpoint(checkpoint)
    model = create_untrained_backbone(ck["identity"]["backbone"], **ck["identity"]["backbone_kwargs"])
    model.load_state_dict(ck["backbone"])
    cb = VerificationCallback(SPLIT / "test_pairs.txt", RUNS / "lfw_arcface_112", prefix="test")
    return cb.evaluate(model, arcface_preprocess, torch.device("cpu"))


def _export(name: str, checkpoint: Path) -> str:
    out = RUNS / f"{name}.safetensors"
    if not out.exists():
        run_cli("export", "safetensors", str(checkpoint), "-o", str(out))
    return str(out)


def table() -> None:
    """The results as Markdown (for the README and docs/benchmarks.md)."""
    res = json.loads(RESULT.read_text())
    fprs = ("1e-05", "0.0001", "0.001", "0.01", "0.1")
    print("| model | test pairs (10-fold) | on the training crops | " + " | ".join(f"TPR@{f}" for f in fprs)
          + " | top-1 / top-3 recall at precision 99.9 % | faces/s |")
    print("|---" * (5 + len(fprs)) + "|")
    for r in res["rows"]:
        t = r["all_pairs"]["tpr_at_fpr"]
        acc, crops = r["test_pairs_accuracy"], r.get("test_pairs_accuracy_on_training_crops")
        g = r["gallery"]
        on_crops = f"{100 * crops['test_acc']:.2f} ± {100 * crops['test_acc_std']:.2f} %" if crops else "—"
        print(f"| {r['model']} | {100 * acc['accuracy_mean']:.2f} ± {100 * acc['accuracy_std']:.2f} % | {on_crops} | "
              + " | ".join(f"{100 * t[f]['tpr']:.2f}" for f in fprs)
              + f" | {100 * g['top1_at_precision_0.999']['recall']:.2f} / "
                f"{100 * g['top3_at_precision_0.999']['recall']:.2f} | {r['faces_per_s']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", nargs="+", default=["prepare", "teachers", "unlabelled", "train", "speed", "eval"],
                    choices=["prepare", "teachers", "unlabelled", "train", "speed", "eval", "table", "plot"])
    ap.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    ap.add_argument("--limit", type=int, default=None, help="eval: the first N evaluation images (a quick check)")
    args = ap.parse_args()
    for stage in args.stage:
        {"prepare": prepare, "teachers": teachers, "unlabelled": unlabelled, "train": lambda: train(args.students),
         "speed": speed, "table": table, "eval": lambda: evaluate(args.students, args.limit),
         "plot": lambda: plot(json.loads(RESULT.read_text())["rows"])}[stage]()


if __name__ == "__main__":
    main()
