"""The main job on its embedded default: real photos that ship with scikit-image, real
pretrained models from PyPI packages, and the LFW protocol when LFW is available."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from faceforge.core.data import lfw_dir
from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write_json
from faceforge.evaluate.plots import plot_roc, plot_similarity
from faceforge.pipeline import FacePipeline


def demo_images() -> dict[str, np.ndarray]:
    """Bundled photos: two people (astronaut Eileen Collins, the 'cameraman'), views of
    them, and a cat and a cup of coffee, which contain no human face."""
    from skimage import data, transform

    astronaut = data.astronaut()
    camera = np.repeat(data.camera()[:, :, None], 3, axis=2)  # grayscale → RGB
    small = (transform.rescale(astronaut, 0.6, channel_axis=2) * 255).round().astype(np.uint8)
    return {
        "astronaut": astronaut,
        "astronaut_mirrored": np.ascontiguousarray(astronaut[:, ::-1]),
        "astronaut_small": small,
        "astronaut_darker": (astronaut.astype(np.float32) * 0.6).astype(np.uint8),
        "cameraman": camera,
        "cameraman_mirrored": np.ascontiguousarray(camera[:, ::-1]),
        "cat": data.chelsea(),
        "coffee": data.coffee(),
    }


def gallery_demo(uri: Path, images: dict[str, np.ndarray], model: str, detector: str, device: str) -> dict:
    """Enrol the two people's original photos into a Milvus Lite gallery, identify every other
    photo against it. Rerunning finds them enrolled already (keys are path + content hash)."""
    from faceforge.search import Records, identify, open_gallery
    from faceforge.search.gallery import content_key

    pipe = FacePipeline(detector=detector, embedder=model, device=device)
    enrolled = {"astronaut": "Eileen Collins (astronaut)", "cameraman": "cameraman"}
    with open_gallery(uri) as g:
        names, paths, keys, vecs = [], [], [], []
        for name, who in enrolled.items():
            faces, emb = pipe.embed_image(images[name], select="largest")
            names.append(who), paths.append(f"skimage/{name}"), vecs.append(emb[0])
            keys.append(content_key(paths[-1], images[name].tobytes()))
        added = g.add(Records(names, paths, keys, [0] * len(names), np.stack(vecs)), pipe.embedder.name)
        results = {}
        for name, img in images.items():
            if name in enrolled:
                continue
            faces = pipe.select(pipe.detect(img), img.shape, "largest")
            if not faces:
                results[name] = "no face"
                continue
            d = identify(g, pipe.embed_faces(img, faces), k=1, threshold=pipe.embedder.threshold,
                         model=pipe.embedder.name)[0]
            results[name] = {"identity": d.identity, "score": round(d.score, 4)}
        stats = g.stats()
    return {"gallery": str(uri), "model": pipe.embedder.name, "threshold": pipe.embedder.threshold,
            "faces_added": added, "records": stats["records"], "identified": results}


def run_demo(out: str | Path, models: tuple[str, ...] = ("sface", "dlib-r29"), detector: str = "yunet",
             device: str = "auto", lfw: bool = True, lfw_model: str = "sface",
             lfw_folds: int | None = None) -> dict:
    from faceforge.search.milvus_gallery import require_milvus
    require_milvus(local=True)  # the gallery part needs the `search` extra: say so before the models run
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = demo_images()
    summary: dict = {"output_dir": str(out), "images": list(images), "models": {}}
    for model in models:
        pipe = FacePipeline(detector=detector, embedder=model, device=device)
        names, embs, no_face = [], [], []
        for name, img in images.items():
            faces = pipe.select(pipe.detect(img), img.shape, "largest")
            if not faces:
                no_face.append(name)
                continue
            names.append(name)
            embs.append(pipe.embed_faces(img, faces)[0])
        emb = np.stack(embs)
        sim = emb @ emb.T
        plot_similarity(sim, names, out / f"similarity_{model}.png", f"{model}: cosine similarity")
        thr = pipe.embedder.threshold
        if thr is None:
            raise FaceForgeError(f"the demo decides same/different: {model} has no default threshold")
        person = {n: n.split("_")[0] for n in names}
        pairs = []
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                same = person[names[i]] == person[names[j]]
                pairs.append({"a": names[i], "b": names[j], "score": round(float(sim[i, j]), 4),
                              "same_person": same, "decision": bool(sim[i, j] >= thr)})
        correct = sum(p["decision"] == p["same_person"] for p in pairs)
        summary["models"][model] = {
            "threshold": thr, "faces": names, "no_face": no_face, "pairs": pairs,
            "correct_decisions": f"{correct}/{len(pairs)}",
            "similarity_png": str(out / f"similarity_{model}.png"),
        }
    summary["gallery"] = gallery_demo(out / "gallery.db", images, models[0], detector, device)
    root = lfw_dir()
    if lfw and (root / "pairs.txt").is_file():
        from faceforge.evaluate.lfw import evaluate_lfw

        pipe = FacePipeline(detector=detector, embedder=lfw_model, device=device)
        res = evaluate_lfw(root, pipe, folds=lfw_folds)
        raw = res.pop("_raw")
        plot_roc({lfw_model: raw["roc"]}, out / "lfw_roc.png", "LFW 10-fold pairs")
        atomic_write_json(out / "lfw.json", res)
        summary["lfw"] = {k: res[k] for k in ("model", "accuracy_mean", "accuracy_std", "no_face_found")}
    elif not lfw:
        summary["lfw"] = "skipped (--no-lfw)"
    else:
        summary["lfw"] = f"skipped: no LFW at {root} (set FACEFORGE_LFW)"
    atomic_write_json(out / "verification.json", summary)
    return summary


if __name__ == "__main__":
    print(json.dumps(run_demo("demo-output"), indent=2))
