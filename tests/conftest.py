"""Shared fixtures: real data from ../shared/data (skipped with a message when absent) and
files that are broken in every way users' folders are."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceforge.core.data import lfw_dir, shared_data_dir

LFW = lfw_dir()
DATA = shared_data_dir()
FIXTURES = DATA.parent / "fixtures"  # reference outputs and key lists (shared/fixtures)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (put ../shared/data beside the checkout "
                    "or set FACEFORGE_DATA / FACEFORGE_LFW)")
    return path


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    return need(LFW / "pairs.txt").parent


def lfw_image(name: str, num: int = 1) -> Path:
    return need(LFW / "images" / name / f"{name}_{num:04d}.jpg")


@pytest.fixture(scope="session")
def face_jpg() -> Path:
    return lfw_image("Aaron_Eckhart", 1)


@pytest.fixture(scope="session")
def two_faces_jpg() -> Path:
    return need(DATA / "small_ids" / "test" / "kit_with_rose.jpg")


@pytest.fixture(scope="session")
def no_face_rgb() -> np.ndarray:
    from skimage import data
    return data.coffee()


@pytest.fixture()
def junk_dir(tmp_path: Path, face_jpg: Path) -> Path:
    """A folder as users have them: one good face, and every kind of bad file."""
    d = tmp_path / "junk"
    d.mkdir()
    good = face_jpg.read_bytes()
    (d / "good.jpg").write_bytes(good)
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (d / "empty.png").write_bytes(b"")
    (d / "text.jpg").write_text("this is not an image\n")
    (d / "notes.txt").write_text("ignored: not an image extension\n")
    from skimage import data
    Image.fromarray(data.coffee()).save(d / "coffee.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(d / "tiny.png")
    return d


def jpeg_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **kw)
    return buf.getvalue()


@contextlib.contextmanager
def headless_chromium():
    """Debian's Chromium under chromedriver, headless and off the network (skips the test
    where they are not installed; .ci/run installs them)."""
    chromium, driver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (chromium.exists() and driver.exists()):
        pytest.skip("headless Chromium check needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1200,1600"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(str(driver)), options=opts)
    try:
        yield browser
    finally:
        browser.quit()
