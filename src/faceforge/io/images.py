"""Image decoding with EXIF orientation and every colour mode turned into RGB uint8."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceforge.core.errors import FaceForgeError, ImageReadError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def load_image(path: str | Path) -> np.ndarray:
    """Return an H×W×3 RGB uint8 array, or raise ImageReadError naming the file.

    Orientation follows the EXIF tag (phones store portraits sideways); grayscale,
    palette, 16-bit and CMYK images are converted, an alpha channel is dropped.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError("file not found", path)
    if path.is_dir():
        raise ImageReadError("is a directory, not an image", path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read: {exc}", path) from None
    return decode_image(data, path)


def decode_image(data: bytes, source: str | Path) -> np.ndarray:
    """Decode encoded image bytes (as load_image); `source` names them in errors."""
    if not data:
        raise ImageReadError("file is empty", source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()  # decode now so truncation surfaces here
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except UnidentifiedImageError:
        raise ImageReadError("not an image file (unknown format)", source) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"image too large: {exc}", source) from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            msg = f"image file is truncated ({msg})"
        raise ImageReadError(f"corrupt image: {msg}", source) from None


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        arr = (arr / (hi if hi > 0 else 1.0) * 255.0).round().astype(np.uint8)
        im = Image.fromarray(arr, mode="L")
    elif im.mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0).round().astype(np.uint8)
        im = Image.fromarray(arr, mode="L")
    if im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA") else im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FaceForgeError(f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def list_images(root: str | Path) -> list[Path]:
    """All image files below `root` (by extension), sorted; raise if there are none."""
    root = Path(root)
    if not root.exists():
        raise FaceForgeError("folder not found", root)
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FaceForgeError("no image files found (looked for "
                             + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")", root)
    return files
