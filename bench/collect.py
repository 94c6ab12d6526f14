"""Collecting identities from the videos of ../shared/data/video with `faceforge collect`.

  hamilton   short_hamilton_clip.mp4 with its two reference photos: mode `one` for each
             person (and for Alex Lacamoire with `--soft-blur 0`) and `many --people 2`, with the
             clusters of one person merged (the default) and without (`--no-merge`, the reference).
             Purity of a folder: the share of its crops that the gallery decision (nearest
             reference photo at the model's threshold, else unknown) gives to the folder's
             person (for `many`, the person most of its crops go to).
  oval       pbs_oval_office_4people_sarsalomon_Face.mp4 (four men, cuts and zooms): `many
             --people 4` (merged and `--no-merge`) and `all`; no reference photos, so purity is
             judged by eye on the contact sheet the script writes.
  crowds     royal_opera_walkers and crowd_street_LSI-IIIT with `all`: they run to the end;
             what was found is reported.
Each run: frames processed, faces, faces/s (end to end: decode, detect, align, embed, pose,
blur, track, collect). Writes bench/results/collect.json and collect_<video>.png sheets.

    python bench/collect.py [--every N] [--only hamilton oval crowds]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from faceforge.core.data import shared_data_dir
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.plots import plot_contact_sheet
from faceforge.io.images import load_image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULT = HERE / "results" / "collect.json"
RUNS = HERE / "results" / "runs_collect"
VIDEO = shared_data_dir() / "video"
SHEET_FACES = 24  # per identity on the PNG sheets


def _collect(mode: str, video: str, name: str, *args: str) -> dict:
    out = RUNS / name
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "faceforge.cli.main", "collect", mode, str(VIDEO / video), "-o", str(out),
           "--device", "cpu", "--json", *args]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    m = json.loads(res.stdout)
    return {"mode": mode, "video": video, "args": list(args), "run": m["run"], "identities": m["identities"],
            "eps": m.get("eps"), "output": str(out.relative_to(REPO))}


def _judge(row: dict, refs: dict[str, np.ndarray], threshold: float, embedder) -> None:
    """Per folder: how the crops are decided against the reference photos."""
    out = REPO / row["output"] / "identities"
    for name, ident in row["identities"].items():
        crops = np.stack([load_image(p) for p in sorted((out / name).glob("*.jpg"))])
        emb = embedder.embed_crops(crops)
        sims = emb @ np.stack(list(refs.values())).T
        decided = [list(refs)[int(np.argmax(s))] if s.max() >= threshold else "unknown" for s in sims]
        counts = {k: decided.count(k) for k in [*refs, "unknown"]}
        person = name if name in refs else max(refs, key=lambda k: counts[k])
        ident.update(decisions=counts, judged_person=person, purity=round(counts[person] / len(decided), 4))


def _sheet(rows: list[dict], path: Path, title: str) -> None:
    groups, totals = {}, {}
    for row in rows:
        out = REPO / row["output"] / "identities"
        for name in row["identities"]:
            files = sorted((out / name).glob("*.jpg"))
            step = max(1, len(files) // SHEET_FACES)
            key = f"{Path(row['output']).name}: {name}"
            groups[key] = [load_image(f) for f in files[::step][:SHEET_FACES]]
            totals[key] = len(files)
    if groups:
        plot_contact_sheet(groups, path, title=title, totals=totals)


def hamilton(every: int) -> list[dict]:
    from faceforge.pipeline import FacePipeline
    pipe = FacePipeline("yunet", "sface", device="cpu")
    refs = {}
    for person in ("lin-manuel-miranda", "alex-lacamoire"):
        refs[person] = pipe.embed_file(VIDEO / f"{person}.png", select="largest")[1][0]
    rows = [_collect("one", "short_hamilton_clip.mp4", f"hamilton_one_{p}", "--reference",
                     str(VIDEO / f"{p}.png"), "--every", str(every)) for p in refs]
    # Lacamoire's face is ~20 px high and under the sharpness gate in every frame: again with
    # the faces under the gate as graph leaves (no floor)
    rows.append(_collect("one", "short_hamilton_clip.mp4", "hamilton_one_alex-lacamoire_soft", "--reference",
                         str(VIDEO / "alex-lacamoire.png"), "--soft-blur", "0", "--every", str(every)))
    rows.append(_collect("many", "short_hamilton_clip.mp4", "hamilton_many", "--people", "2", "--every", str(every)))
    rows.append(_collect("many", "short_hamilton_clip.mp4", "hamilton_many_reference", "--people", "2", "--no-merge",
                         "--every", str(every)))
    for row in rows:
        _judge(row, refs, float(pipe.embedder.threshold), pipe.embedder)
    _sheet(rows, HERE / "results" / "collect_hamilton.png", "short_hamilton_clip: collected identities")
    return rows


def oval(every: int) -> list[dict]:
    video = "pbs_oval_office_4people_sarsalomon_Face.mp4"
    rows = [_collect("many", video, "oval_many", "--people", "4", "--every", str(every)),
            _collect("many", video, "oval_many_reference", "--people", "4", "--no-merge", "--every", str(every)),
            _collect("all", video, "oval_all", "--every", str(every))]
    _sheet(rows, HERE / "results" / "collect_oval.png", "pbs_oval_office (4 people): collected identities")
    return rows


def crowds(every: int) -> list[dict]:
    rows = [_collect("all", v, f"crowd_{Path(v).stem[:12]}", "--every", str(every))
            for v in ("royal_opera_walkers_facenet_pytorch.mp4", "crowd_street_LSI-IIIT.mp4")]
    _sheet(rows, HERE / "results" / "collect_crowds.png", "crowd videos: identities found")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=2, help="process every n-th frame")
    ap.add_argument("--only", nargs="+", default=["hamilton", "oval", "crowds"], choices=["hamilton", "oval", "crowds"])
    args = ap.parse_args()
    res = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    for part in args.only:
        res[part] = {"hamilton": hamilton, "oval": oval, "crowds": crowds}[part](args.every)
        for row in res[part]:
            r = row["run"]
            found = ", ".join(f"{n} {i['faces']}" + (f" (purity {100 * i['purity']:.0f} %)" if "purity" in i else "")
                              for n, i in row["identities"].items()) or "nothing"
            print(f"{row['video'][:28]:28s} {row['mode']:4s} {r['frames_processed']:4d} frames {r['faces']:5d} faces "
                  f"{r['faces_per_s']:6.1f} faces/s → {found}")
    import torch
    res.update(benchmark="faceforge collect on the videos of ../shared/data/video (yunet + sface)",
               machine={"torch_threads": torch.get_num_threads(), "device": "cpu"})
    atomic_write_json(RESULT, res)


if __name__ == "__main__":
    main()
