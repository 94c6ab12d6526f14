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
