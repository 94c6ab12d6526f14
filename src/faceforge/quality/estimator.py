"""The quality regressor: CatBoost on BatchNorm-input features → a score 0..100.

A trained estimator is two files side by side: `<name>.cbm` (CatBoost's own format, no
pickle) and `<name>.json`, a manifest of what the features mean — backbone name, a
fingerprint of its weights, the BatchNorm layers in forward order and the feature kind.
Features from any other network (or the same one with other weights or statistics) would
be silently meaningless, so `QualityEstimator.check` refuses them.

Scores: the reference recipe maps a prediction p to round(clip(p, 0, 1)·100) (mapping "unit"). That
assumes labels spread over 0..1, as ArcFace-style cosines do; a network whose embeddings
share a narrow cone (dlib-r29: leave-one-out labels 0.94–0.99 on LFW) then gets five
distinct scores, and dropping "the lowest 5 %" becomes a tie-break. The default mapping
"label-range" stretches the 1st–99th percentile of the training labels onto 0..100 instead;
the order of faces — and so every filtering and error-vs-reject result — is the same as the
regressor's, only the integer resolution differs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from faceforge.core.errors import FaceForgeError, ModelLoadError
from faceforge.core.extras import require
from faceforge.core.files import atomic_write_json

FORMAT = "faceforge-quality"
VERSION = 1

# The reference recipe's settings; early stopping on a held-out identity split decides how many of the iterations count.
CATBOOST_DEFAULTS = {"depth": 10, "l2_leaf_reg": 2, "iterations": 2500, "learning_rate": 0.03,
                     "loss_function": "RMSE"}


def require_catboost() -> ModuleType:
    """CatBoost, the regressor behind every trained estimator (the `quality` extra)."""
    return require("catboost", "quality", "the quality estimator")


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over the state dict (names, shapes, values: parameters and BN statistics)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()


SCORE_MAPPINGS = ("label-range", "unit")


def to_score(prediction: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """clip((p − lo)/(hi − lo), 0, 1)·100 rounded to an integer (the reference truncates,
    which biases every score down)."""
    p = (np.asarray(prediction, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    return np.rint(np.clip(p, 0.0, 1.0) * 100).astype(np.int32)


def estimator_paths(path: str | Path) -> tuple[Path, Path]:
    """The .cbm model and the .json manifest an estimator path names."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".cbm", ".json") else p
    return stem.with_name(stem.name + ".cbm"), stem.with_name(stem.name + ".json")


@dataclass
class QualityEstimator:
    model: object                      # catboost.CatBoostRegressor
    manifest: dict = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        return int(self.manifest["num_features"])

    def check(self, backbone: str, layer_names: list[str], kind: str, fingerprint: str | None = None,
              source: str | Path | None = None) -> None:
        """Raise unless features from this backbone mean what the estimator was trained on."""
        m = self.manifest
        where = source or m.get("source")
        if backbone != m["backbone"]:
            raise FaceForgeError(f"quality estimator was trained on {m['backbone']!r} features, "
                                 f"not {backbone!r}", where)
        if kind != m["feature_kind"]:
            raise FaceForgeError(f"estimator uses {m['feature_kind']!r} features, got {kind!r}", where)
        if list(layer_names) != list(m["layers"]):
            raise FaceForgeError(f"BatchNorm layout differs: {len(layer_names)} layers vs the estimator's "
                                 f"{len(m['layers'])} (another architecture?)", where)
        if fingerprint is not None and m.get("weights_sha256") and fingerprint != m["weights_sha256"]:
            raise FaceForgeError(f"{backbone!r} has other weights or BatchNorm statistics than the network the "
                                 "estimator was trained on (fine-tuned?): retrain the estimator", where)

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise FaceForgeError(f"expected N×{self.num_features} quality features, got {x.shape}")
        if len(x) == 0:
            return np.zeros(0)
        return np.asarray(self.model.predict(x), dtype=np.float64)

    def score(self, features: np.ndarray) -> np.ndarray:
        return self.map_score(self.predict(features))

    def map_score(self, prediction: np.ndarray) -> np.ndarray:
        """Raw regressor output → the 0..100 score under this estimator's mapping."""
        lo, hi = self.manifest.get("score_range", (0.0, 1.0))
        return to_score(prediction, lo, hi)

    def save(self, path: str | Path) -> tuple[Path, Path]:
        cbm, js = estimator_paths(path)
        cbm.parent.mkdir(parents=True, exist_ok=True)
        tmp = cbm.with_name(cbm.name + ".tmp")
        self.model.save_model(str(tmp), format="cbm")
        tmp.replace(cbm)
        atomic_write_json(js, {k: v for k, v in self.manifest.items() if k != "source"})
        return cbm, js

    @classmethod
    def load(cls, path: str | Path) -> "QualityEstimator":
        catboost = require_catboost()
        cbm, js = estimator_paths(path)
        for p in (cbm, js):
            if not p.is_file():
                raise ModelLoadError("quality estimator file not found (needs both .cbm and .json)", p)
        try:
            manifest = json.loads(js.read_text())
        except ValueError as exc:
            raise ModelLoadError(f"manifest is not JSON: {exc}", js) from None
        if manifest.get("format") != FORMAT:
            raise ModelLoadError(f"not a {FORMAT} manifest", js)
        if int(manifest.get("version", 0)) > VERSION:
            raise ModelLoadError(f"manifest version {manifest.get('version')} is newer than this FaceForge "
                                 f"reads ({VERSION})", js)
        model = catboost.CatBoostRegressor()
        try:
            model.load_model(str(cbm), format="cbm")
        except catboost.CatBoostError as exc:
            raise ModelLoadError(f"not a CatBoost model: {exc}", cbm) from None
        if len(model.feature_names_ or []) != manifest["num_features"]:
            raise ModelLoadError(f"model takes {len(model.feature_names_ or [])} features, manifest says "
                                 f"{manifest['num_features']}", cbm)
        return cls(model, {**manifest, "source": str(cbm)})


def identity_split(identities, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation rows: whole identities, so early stopping sees unseen people."""
    ids = np.asarray(identities)
    uniq = np.unique(ids)
    rng = np.random.default_rng(seed)
    n_val = int(round(len(uniq) * val_fraction))
    if n_val == 0 or n_val >= len(uniq):
        raise FaceForgeError(f"cannot hold out {val_fraction:.0%} of {len(uniq)} identities for validation")
    val_ids = rng.choice(uniq, size=n_val, replace=False)
    return np.isin(ids, val_ids)


def train_estimator(features: np.ndarray, labels: np.ndarray, identities, *, backbone: str,
                    layer_names: list[str], kind: str = "var", fingerprint: str | None = None,
                    label_source: str = "leave-one-out", score_mapping: str = "label-range",
                    val_fraction: float = 0.1,
                    early_stopping_rounds: int = 200, seed: int = 0, threads: int = -1,
                    verbose: bool = False, **catboost_params) -> QualityEstimator:
    """Fit the regressor; rows without a label (NaN: single-image identities) are dropped."""
    catboost = require_catboost()
    if score_mapping not in SCORE_MAPPINGS:
        raise FaceForgeError(f"unknown score mapping {score_mapping!r}; one of {', '.join(SCORE_MAPPINGS)}")
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.float64)
    ids = np.asarray(identities)
    if x.ndim != 2 or x.shape[1] != 2 * len(layer_names):
        raise FaceForgeError(f"features of shape {x.shape} do not match {len(layer_names)} BatchNorm layers")
    if not (len(x) == len(y) == len(ids)):
        raise FaceForgeError(f"{len(x)} feature rows, {len(y)} labels, {len(ids)} identities")
    ok = np.isfinite(y) & np.isfinite(x).all(axis=1)
    if ok.sum() < 20:
        raise FaceForgeError(f"only {int(ok.sum())} labelled images (identities of one image have no "
                             "label): too few to train a quality estimator")
    x, y, ids = x[ok], y[ok], ids[ok]
    val = identity_split(ids, val_fraction, seed)
    params = {**CATBOOST_DEFAULTS, **catboost_params}
    model = catboost.CatBoostRegressor(**params, random_seed=seed, thread_count=threads, verbose=verbose,
                              allow_writing_files=False)
    model.fit(x[~val], y[~val], eval_set=(x[val], y[val]), early_stopping_rounds=early_stopping_rounds,
              use_best_model=True)
    pred = model.predict(x[val])
    manifest = {
        "format": FORMAT, "version": VERSION, "backbone": backbone, "weights_sha256": fingerprint,
        "feature_kind": kind, "layers": list(layer_names), "num_features": int(x.shape[1]),
        "label": label_source, "catboost": params, "seed": seed, "score_mapping": score_mapping,
        "score_range": ([float(v) for v in np.percentile(y, [1, 99])] if score_mapping == "label-range"
                        else [0.0, 1.0]),
        "train": {"images": int((~val).sum()), "val_images": int(val.sum()),
                  "identities": int(len(np.unique(ids))), "unlabelled_dropped": int((~ok).sum()),
                  "best_iteration": int(model.get_best_iteration()),
                  "val_rmse": float(np.sqrt(np.mean((pred - y[val]) ** 2))),
                  "val_spearman": _spearman(pred, y[val])},
    }
    return QualityEstimator(model, manifest)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho with tied values given their mean rank (as scipy.stats.spearmanr):
    ranking ties by position would invent an order the scores do not have."""
    from scipy.stats import rankdata
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])
