"""IJB-C / IJB-B 1:1 template verification from the official files.

Layout, as the dataset is distributed:

    ROOT/loose_crop/<image>                    face crops, read as provided
    ROOT/meta/ijbc_name_5pts_score.txt         image x1 y1 … x5 y5 detector_score
    ROOT/meta/ijbc_face_tid_mid.txt            image template_id media_id  (same rows, same order)
    ROOT/meta/ijbc_template_pair_label.txt     template_a template_b label (1 = same person)

(`ijbb_…` for IJB-B.) Every image is aligned with its given landmarks and embedded plain
and mirrored. A mode chooses how image features are formed before pooling: F adds the
mirrored view's raw embedding, N keeps the raw norm as a weight (otherwise each image is
L2-normalised), D multiplies by the detector score. Pooling is media-level mean, then the
sum over a template's media, then L2 normalisation; a pair's score is the cosine of its
two templates. `write_ijb_protocol` builds a small protocol in the same files from any
folder of identity sub-folders.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import scipy.sparse as sp

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write_text
from faceforge.core.progress import progress
from faceforge.evaluate.verification import DEFAULT_FPRS, RocCurve, verification_report
from faceforge.io.images import IMAGE_EXTENSIONS, load_image
from faceforge.vision.detectors.base import central_face
from faceforge.vision.face import Face

MODES = ("N0D0F0", "N0D0F1", "N0D1F0", "N0D1F1", "N1D0F0", "N1D0F1", "N1D1F0", "N1D1F1")


@dataclass
class IjbProtocol:
    root: Path
    target: str
    images: list[str]          # file names under loose_crop/
    landmarks: np.ndarray      # N×5×2 float32
    det_scores: np.ndarray     # N float32
    templates: np.ndarray      # N int64
    medias: np.ndarray         # N int64
    pairs: np.ndarray          # P×2 int64 template ids
    labels: np.ndarray         # P bool


def meta_path(root: str | Path, target: str, kind: str) -> Path:
    return Path(root) / "meta" / f"{target.lower()}_{kind}.txt"


def _read_table(path: Path, types: list[pa.DataType]) -> pa.Table:
    """Space-separated, no header, exactly len(types) typed columns (integers parsed as
    integers: a '1.0' in a template id is an error, not a silent cast)."""
    if not path.is_file():
        raise FaceForgeError("protocol file not found", path)
    names = [f"c{i}" for i in range(len(types))]
    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=" "),
            convert_options=pacsv.ConvertOptions(column_types=dict(zip(names, types))))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise FaceForgeError(f"malformed protocol file ({len(types)} space-separated columns expected): {exc}",
                             path) from None
    if table.num_rows == 0:
        raise FaceForgeError("protocol file is empty", path)
    return table


def read_ijb(root: str | Path, target: str = "IJBC") -> IjbProtocol:
    """Read the three meta files; check they agree with each other and with loose_crop/."""
    root = Path(root)
    lm = _read_table(meta_path(root, target, "name_5pts_score"), [pa.string()] + [pa.float32()] * 11)
    tm = _read_table(meta_path(root, target, "face_tid_mid"), [pa.string(), pa.int64(), pa.int64()])
    pl = _read_table(meta_path(root, target, "template_pair_label"), [pa.int64()] * 3)
    images = lm.column(0).to_pylist()
    names = tm.column(0).to_pylist()
    if names != images:
        i = next((k for k, (a, b) in enumerate(zip(names, images)) if a != b), min(len(names), len(images)))
        raise FaceForgeError(
            f"face_tid_mid and name_5pts_score disagree at row {i + 1} "
            f"({names[i] if i < len(names) else 'end of file'} vs {images[i] if i < len(images) else 'end of file'}); "
            "the two files must list the same images in the same order", meta_path(root, target, "face_tid_mid"))
    points = np.stack([lm.column(k).to_numpy() for k in range(1, 12)], axis=1)
    templates = tm.column(1).to_numpy()
    pairs = np.stack([pl.column(0).to_numpy(), pl.column(1).to_numpy()], axis=1)
    labels = pl.column(2).to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise FaceForgeError("labels must be 0 or 1", meta_path(root, target, "template_pair_label"))
    unknown = ~np.isin(pairs, templates)
    if unknown.any():
        raise FaceForgeError(f"{int(unknown.any(axis=1).sum())} pairs name templates that no image belongs to "
                             f"(e.g. {int(pairs[unknown][0])})", meta_path(root, target, "template_pair_label"))
    return IjbProtocol(root, target, images, points[:, :10].reshape(-1, 5, 2).astype(np.float32),
                       points[:, 10].astype(np.float32), templates, tm.column(2).to_numpy(), pairs,
                       labels.astype(bool))


def embed_ijb(protocol: IjbProtocol, embedder, batch_size: int = 64, show_progress: bool = True
              ) -> tuple[np.ndarray, np.ndarray]:
    """Raw embeddings of every image, plain and mirrored (N×D each), aligned with the
    protocol's landmarks on the embedder's template."""
    crop_dir = protocol.root / "loose_crop"
    plain, mirrored = [], []
    n = len(protocol.images)
    for a in progress(range(0, n, batch_size), f"embed {protocol.target}", enabled=show_progress):
        crops = np.stack([
            embedder.align(load_image(crop_dir / protocol.images[i]),
                           Face(np.zeros(4, np.float32), 1.0, protocol.landmarks[i]))
            for i in range(a, min(a + batch_size, n))])
        plain.append(embedder.embed_raw(crops))
        mirrored.append(embedder.embed_raw(embedder.mirror(crops)))
    return np.concatenate(plain), np.concatenate(mirrored)


def _mode(mode: str) -> tuple[bool, bool, bool]:
    if mode not in MODES:
        raise FaceForgeError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    return mode[1] == "1", mode[3] == "1", mode[5] == "1"


def image_features(raw: np.ndarray, raw_flip: np.ndarray, det_scores: np.ndarray, mode: str) -> np.ndarray:
    norm, det, flip = _mode(mode)
    f = (raw + raw_flip if flip else raw).astype(np.float32)
    if not norm:
        f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    if det:
        f = f * det_scores[:, None]
    return f


def _segment_sum(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Row sums per group as one sparse (groups × rows) product: no Python loop, no copy."""
    m = sp.csr_matrix((np.ones(len(groups), values.dtype), (groups, np.arange(len(groups)))),
                      shape=(n_groups, len(groups)))
    return np.asarray(m @ values)


def template_features(features: np.ndarray, templates: np.ndarray, medias: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(sorted template ids, T×D unit vectors): mean per (template, media), summed per
    template, normalised."""
    t_ids, t_code = np.unique(templates, return_inverse=True)
    _, m_code = np.unique(medias, return_inverse=True)
    key = t_code.astype(np.int64) * (int(m_code.max()) + 1) + m_code  # one int per (template, media)
    keys, group = np.unique(key, return_inverse=True)
    feats = np.ascontiguousarray(features, dtype=np.float32)
    media_mean = _segment_sum(feats, group, len(keys)) / np.bincount(group)[:, None].astype(np.float32)
    tf = _segment_sum(media_mean, keys // (int(m_code.max()) + 1), len(t_ids))
    tf /= np.maximum(np.linalg.norm(tf, axis=1, keepdims=True), 1e-12)
    return t_ids, tf.astype(np.float32)


def pair_scores(template_ids: np.ndarray, template_feats: np.ndarray, pairs: np.ndarray,
                method: str = "auto", chunk: int = 8192, block: int = 512) -> np.ndarray:
    """Cosine of each template pair (IJB-C has 15.7 M over 23 k templates).

    'gather' multiplies the two rows of each pair, in cache-sized chunks; 'blocks' sorts the
    pairs by first template and reads their scores out of block × T matrix products, which
    costs T²·D however few the pairs, and wins once they are more than ~1/64 of all T²
    ('auto' chooses by that)."""
    a = np.searchsorted(template_ids, pairs[:, 0])
    b = np.searchsorted(template_ids, pairs[:, 1])
    t = len(template_ids)
    if method == "auto":
        method = "blocks" if len(pairs) * 64 >= t * t else "gather"
    out = np.empty(len(pairs), np.float32)
    if method == "gather":
        for i in range(0, len(pairs), chunk):
            sl = slice(i, i + chunk)
            x = template_feats.take(a[sl], axis=0)
            x *= template_feats.take(b[sl], axis=0)
            out[sl] = x.sum(axis=1)
    elif method == "blocks":
        order = np.argsort(a, kind="stable")
        sa, sb = a[order], b[order]
        bounds = np.searchsorted(sa, np.arange(0, t + block, block))
        for k in range(len(bounds) - 1):
            lo, hi = bounds[k], bounds[k + 1]
            if lo < hi:
                prod = template_feats[k * block:(k + 1) * block] @ template_feats.T
                out[order[lo:hi]] = prod[sa[lo:hi] - k * block, sb[lo:hi]]
    else:
        raise FaceForgeError(f"unknown pair-scoring method {method!r}: auto, gather or blocks")
    return out


def evaluate_ijb(protocol: IjbProtocol, raw: np.ndarray, raw_flip: np.ndarray, modes=MODES,
                 fprs=DEFAULT_FPRS) -> tuple[dict, dict[str, RocCurve]]:
    """The standard table (TPR at each FPR per mode), EER and AUC; plus each mode's ROC."""
    if raw.shape != raw_flip.shape or len(raw) != len(protocol.images):
        raise FaceForgeError(f"features {raw.shape}/{raw_flip.shape} do not match the protocol's "
                             f"{len(protocol.images)} images", protocol.root)
    res = {"protocol": f"{protocol.target} 1:1 template verification", "images": len(protocol.images),
           "templates": int(len(np.unique(protocol.templates))), "pairs": int(len(protocol.pairs)),
           "genuine_pairs": int(protocol.labels.sum()), "modes": {}}
    curves = {}
    for mode in modes:
        f = image_features(raw, raw_flip, protocol.det_scores, mode)
        tids, tf = template_features(f, protocol.templates, protocol.medias)
        scores = pair_scores(tids, tf, protocol.pairs)
        rep, curves[mode] = verification_report(scores, protocol.labels, fprs)
        rep.pop("distributions")
        res["modes"][mode] = {k: rep[k] for k in ("tpr_at_fpr", "eer", "auc")}
    return res, curves


def write_ijb_protocol(src: str | Path, out: str | Path, detector, target: str = "IJBC",
                       templates_per_identity: int = 2, media_size: int = 2, min_images: int = 4,
                       max_images_per_identity: int | None = None, max_identities: int | None = None,
                       max_impostor_pairs: int = 100_000, seed: int = 0) -> dict:
    """Write an IJB-style 1:1 protocol (the official file formats) from SRC/<identity>/<image>.

    Each identity's images (sorted, then shuffled by seed) are dealt into templates; inside a
    template, runs of `media_size` images share a media id (standing in for video frames).
    Landmarks and scores come from `detector` (central face); images without a face are left
    out and listed. Genuine pairs: every template pair of an identity; impostor pairs: every
    cross-identity template pair, sampled down to `max_impostor_pairs`. Images are copied,
    never modified.
    """
    src, out = Path(src), Path(out)
    ids = sorted(d for d in src.iterdir() if d.is_dir()) if src.is_dir() else []
    rng = np.random.default_rng(seed)
    chosen = []
    for d in ids:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if len(files) >= max(min_images, templates_per_identity):
            chosen.append((d.name, [files[i] for i in rng.permutation(len(files))][:max_images_per_identity]))
    chosen = chosen[:max_identities]
    if len(chosen) < 2:
        raise FaceForgeError(f"need at least two identities with {min_images}+ images", src)
    (out / "loose_crop").mkdir(parents=True, exist_ok=True)
    name_rows, tid_rows, skipped, sources = [], [], [], {}
    owner: dict[int, str] = {}
    tid = mid = 0
    for ident, files in chosen:
        found = []
        for f in files:
            img = load_image(f)
            face = central_face(detector.detect(img), img.shape)
            (found.append((f, face)) if face is not None else skipped.append(str(f)))
        for t in range(templates_per_identity):
            members = found[t::templates_per_identity]
            if not members:
                continue
            tid += 1
            owner[tid] = ident
            for j, (f, face) in enumerate(members):
                if j % media_size == 0:
                    mid += 1
                name = f"{len(name_rows) + 1}{f.suffix.lower()}"
                shutil.copyfile(f, out / "loose_crop" / name)
                sources[name] = str(f)
                pts = " ".join(f"{v:.3f}" for v in face.landmarks.ravel())
                name_rows.append(f"{name} {pts} {face.score:.6f}")
                tid_rows.append(f"{name} {tid} {mid}")
    by_id: dict[str, list[int]] = {}
    for t, ident in owner.items():
        by_id.setdefault(ident, []).append(t)
    genuine = [(a, b) for ts in by_id.values() for a, b in combinations(ts, 2)]
    impostor = [(a, b) for a, b in combinations(sorted(owner), 2) if owner[a] != owner[b]]
    if len(impostor) > max_impostor_pairs:
        impostor = [impostor[i] for i in sorted(rng.choice(len(impostor), max_impostor_pairs, replace=False))]
    pairs = [(a, b, 1) for a, b in genuine] + [(a, b, 0) for a, b in impostor]
    pairs.sort()
    atomic_write_text(meta_path(out, target, "name_5pts_score"), "\n".join(name_rows) + "\n")
    atomic_write_text(meta_path(out, target, "face_tid_mid"), "\n".join(tid_rows) + "\n")
    atomic_write_text(meta_path(out, target, "template_pair_label"),
                      "".join(f"{a} {b} {lab}\n" for a, b, lab in pairs))
    return {"images": len(name_rows), "identities": len(by_id), "templates": tid, "medias": mid,
            "genuine_pairs": len(genuine), "impostor_pairs": len(impostor), "skipped_no_face": skipped,
            "sources": sources}
