"""Image decoding with EXIF orientation and every colour mode turned into RGB uint8."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceforge.core.errors import FaceForgeError, ImageReadError, ImageTooLargeError
from faceforge.core.files import read_regular, text_path

# Formats Pillow registers but cannot decode by itself: identify-only stubs (BUFR, GRIB,
# HDF5, MPEG), Ghostscript (EPS) and Windows-only metafiles (WMF/EMF).
_NOT_DECODED = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "EPS", "WMF"})


def _decodable_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN and fmt not in _NOT_DECODED)


# Every extension this Pillow build can decode: JPEG, PNG, GIF, PGM/PPM/PBM (ORL, Yale),
# TIFF, WebP, BMP, ... A folder's files with these are read (or skipped with a reason).
IMAGE_EXTENSIONS = _decodable_extensions()


def load_image(path: str | Path) -> np.ndarray:
    """Return an H×W×3 RGB uint8 array, or raise ImageReadError naming the file.

    Orientation follows the EXIF tag (phones store portraits sideways); grayscale,
    palette, 16-bit and CMYK images are converted, an alpha channel is dropped.
    """
    path = text_path(path)
    return decode_image(read_regular(path), path)


def image_size(data: bytes, source: str | Path) -> tuple[int, int]:
    """(width, height) from the header alone, before anything is decoded."""
    if not data:
        raise ImageReadError("file is empty", source)
    try:
        with warnings.catch_warnings():  # the caller judges the size; the header alone is harmless
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as exc:  # Pillow refuses to open far too large headers
        raise ImageTooLargeError(f"image too large: {exc}", source) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageReadError("not an image file (unknown format)", source) from None


def decode_image(data: bytes, source: str | Path) -> np.ndarray:
    """Decode encoded image bytes (as load_image); `source` names them in errors."""
    if not data:
        raise ImageReadError("file is empty", source)
    try:
        with warnings.catch_warnings():  # the size is judged below, not by the warning filters
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if Image.MAX_IMAGE_PIXELS and im.width * im.height > Image.MAX_IMAGE_PIXELS:
                    raise ImageTooLargeError(f"image too large: {im.width}×{im.height} is over "
                                             f"{Image.MAX_IMAGE_PIXELS} pixels", source)
                im.load()  # decode now so truncation surfaces here
                im = ImageOps.exif_transpose(im)
                return pil_to_rgb(im)
    except UnidentifiedImageError:
        raise ImageReadError("not an image file (unknown format)", source) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image too large: {exc}", source) from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            msg = f"image file is truncated ({msg})"
        raise ImageReadError(f"corrupt image: {msg}", source) from None


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow image mode (16-bit, float, palette, CMYK, with alpha) → H×W×3 RGB uint8."""
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
    """Everything below `root` named like an image, sorted; raise if there is nothing.
    Entries that are not regular files (a FIFO, a broken link) are listed too, so that
    reading them gives a skip record with the reason instead of silence."""
    root = Path(root)
    if not root.exists():
        raise FaceForgeError("not found", root)
    if not root.is_dir():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir())
    if not files:
        raise FaceForgeError(f"no image files found (none of the {len(IMAGE_EXTENSIONS)} extensions Pillow "
                             "decodes, e.g. .jpg .png .gif .pgm .ppm .tif .webp .bmp)", root)
    return files
