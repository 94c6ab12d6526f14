import os

import numpy as np
import pytest
from PIL import Image

from faceforge import ImageReadError
from faceforge.core.errors import FaceForgeError
from faceforge.io import list_images, load_image


def test_real_jpeg_is_rgb_uint8(face_jpg):
    img = load_image(face_jpg)
    assert img.shape == (250, 250, 3) and img.dtype == np.uint8


@pytest.mark.parametrize("name, reason", [
    ("truncated.jpg", "truncated"),
    ("corrupt.jpg", "corrupt"),
    ("empty.png", "empty"),
    ("text.jpg", "not an image"),
])
def test_bad_files_raise_naming_the_file(junk_dir, name, reason):
    with pytest.raises(ImageReadError) as exc:
        load_image(junk_dir / name)
    assert str(junk_dir / name) in str(exc.value)
    assert reason in str(exc.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "CMYK"])
def test_every_colour_mode_becomes_rgb(tmp_path, face_jpg, mode):
    src = Image.open(face_jpg)
    im = src.convert(mode) if mode != "I;16" else Image.fromarray(
        (np.asarray(src.convert("L"), np.uint16) * 257))
    path = tmp_path / ("x.tif" if mode in ("I;16", "CMYK") else "x.png")
    im.save(path)
    out = load_image(path)
    assert out.shape == (250, 250, 3) and out.dtype == np.uint8
    if mode in ("L", "LA", "I;16"):
        assert np.array_equal(out[..., 0], out[..., 1])
    if mode == "RGBA":
        assert np.array_equal(out, np.asarray(src))
    if mode == "P":  # 256-colour quantisation error, nothing more
        assert np.abs(out.astype(int) - np.asarray(src).astype(int)).mean() < 15


@pytest.mark.parametrize("fmt", ["BMP", "WEBP", "PNG"])
def test_formats(tmp_path, face_jpg, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    Image.open(face_jpg).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    assert load_image(path).shape == (250, 250, 3)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (40, 20, 3)
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half now on top


def test_list_images(junk_dir, tmp_path):
    names = [p.name for p in list_images(junk_dir)]
    assert "notes.txt" not in names and "good.jpg" in names and names == sorted(names)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(FaceForgeError, match="no image files"):
        list_images(empty)
    with pytest.raises(FaceForgeError, match="not found"):
        list_images(tmp_path / "absent")


def _png_header(width: int, height: int) -> bytes:
    """A PNG of signature, IHDR and IEND only: it claims any size in a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) \
        + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12000, 15000, 40000])
def test_header_bombs_are_too_large_not_a_crash(side):
    from faceforge.core.errors import ImageTooLargeError
    from faceforge.io.images import decode_image, image_size
    data = _png_header(side, side)
    assert len(data) < 100
    if side * side > 2 * Image.MAX_IMAGE_PIXELS:  # Pillow refuses to even open these
        with pytest.raises(ImageTooLargeError, match="too large"):
            image_size(data, "bomb.png")
    else:
        assert image_size(data, "bomb.png") == (side, side)
    with pytest.raises(ImageTooLargeError, match="bomb.png"):  # over Pillow's bomb limit: never decoded
        decode_image(data, "bomb.png")
    with pytest.raises(ImageReadError, match="corrupt"):       # a plain large header: no pixels follow
        decode_image(_png_header(9000, 9000), "big.png")


def test_every_format_pillow_decodes_is_listed(tmp_path, face_jpg):
    from faceforge.io.images import IMAGE_EXTENSIONS
    assert {".gif", ".pgm", ".ppm", ".pbm", ".pnm", ".jpg", ".png", ".tif", ".webp"} <= IMAGE_EXTENSIONS
    assert not {".txt", ".pdf", ".mp4", ".eps"} & IMAGE_EXTENSIONS
    im = Image.open(face_jpg)
    im.convert("L").save(tmp_path / "a.pgm")
    im.save(tmp_path / "b.gif")
    im.save(tmp_path / "c.ppm")
    os.mkfifo(tmp_path / "d.jpg")  # listed, so that reading it gives a reason instead of silence
    assert [p.name for p in list_images(tmp_path)] == ["a.pgm", "b.gif", "c.ppm", "d.jpg"]
    for name in ("a.pgm", "b.gif", "c.ppm"):
        assert load_image(tmp_path / name).shape == (250, 250, 3)
    with pytest.raises(ImageReadError, match="not a regular file"):
        load_image(tmp_path / "d.jpg")
