"""Landmarks on whole images, as `faceforge landmarks predict` runs them: detect, predict
the points with the landmark network, draw them."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image

from faceforge.core.errors import FaceForgeError
from faceforge.core.files import atomic_write, path_text
from faceforge.io.images import load_image
from faceforge.landmarks.landmarker import Landmarker, RefinedDetector
from faceforge.vision.detectors import create_face_detector
from faceforge.vision.prepare import draw_face


def predict_images(images: Sequence[str | Path], output: str | Path, weights: str | Path | None = None,
                   detector: str = "yunet", device: str = "cpu") -> list[dict]:
    """One record per image: its faces (box, the detector's score, the network's points) and
    the drawn PNG, or the reason it could not be read. One bad file never stops the others."""
    det = RefinedDetector(create_face_detector(detector, device=device), Landmarker.load(weights, device=device))
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, used = [], set()
    for path in images:
        try:
            image = load_image(path)
        except FaceForgeError as exc:
            results.append({"path": path_text(path), "error": exc.reason})
            continue
        faces = det.detect(image)
        drawn = image
        for f in faces:
            drawn = draw_face(drawn, f.box, f.landmarks)
        stem = Path(path).stem
        while stem in used:  # two inputs with one name (a/x.jpg, b/x.jpg) keep both drawings
            stem += "_"
        used.add(stem)
        target = out_dir / f"{stem}.png"
        with atomic_write(target, "wb") as fh:
            Image.fromarray(drawn).save(fh, format="PNG")
        results.append({"path": path_text(path), "faces": [f.to_dict() for f in faces], "drawn": str(target)})
    return results
