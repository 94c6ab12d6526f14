"""The REST service on real photos: behaviour, tokens, limits, structured errors, a schemathesis
run against its OpenAPI schema, and `faceforge serve` itself on loopback."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the 'serve' extra (fastapi, uvicorn) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from faceforge.pipeline import FacePipeline  # noqa: E402
from faceforge.search.gallery import open_gallery  # noqa: E402
from faceforge.serve import ServeSettings, create_app  # noqa: E402
from tests.conftest import DATA, need  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def jpeg(path: Path) -> bytes:
    return need(path).read_bytes()


TRAIN = DATA / "small_ids" / "train"
TEST = DATA / "small_ids" / "test"


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(detector="yunet", embedder="sface", device="cpu")


def make_client(tmp_path, pipeline, **kw) -> tuple[TestClient, object]:
    g = open_gallery(f"faiss:{tmp_path / 'g'}")
    settings = ServeSettings(token=TOKEN, threshold=pipeline.embedder.threshold, **kw)
    return TestClient(create_app(g, pipeline, settings)), g


@pytest.fixture()
def client(tmp_path, pipeline):
    c, g = make_client(tmp_path, pipeline)
    with c:
        yield c
    g.close()


def enrol(client, person: str, files=None) -> None:
    for f in files or sorted((TRAIN / person).iterdir()):
        r = client.post("/enrol", files={"image": (f.name, f.read_bytes(), "image/jpeg")},
                        data={"identity": person}, headers=AUTH)
        assert r.status_code == 200, r.text


def test_enrol_identify_verify_delete(client):
    need(TRAIN)
    for person in ("obama", "biden", "kit_harington", "rose_leslie"):
        enrol(client, person)
    again = client.post("/enrol", files={"image": ("x.jpg", next((TRAIN / "obama").iterdir()).read_bytes())},
                        data={"identity": "obama"}, headers=AUTH).json()
    assert again == {"identity": "obama", "faces_added": 0, "already_enrolled": True}
    r = client.post("/identify", files={"image": ("t.jpg", jpeg(TEST / "obama_and_biden.jpg"))}, headers=AUTH)
    assert r.status_code == 200
    names = {f["identity"] for f in r.json()["faces"]}
    assert {"obama", "biden"} <= names
    r = client.post("/identify", files={"image": ("t.jpg", jpeg(TEST / "alex_lacamoire1.jpg"))}, headers=AUTH)
    assert [f["identity"] for f in r.json()["faces"]] == ["unknown"]  # not enrolled
    obama = sorted((TRAIN / "obama").iterdir())
    r = client.post("/verify", files={"a": ("a.jpg", obama[0].read_bytes()), "b": ("b.jpg", jpeg(TEST / "obama1.jpg"))},
                    headers=AUTH)
    assert r.json()["same_person"] is True
    r = client.post("/verify", files={"a": ("a.jpg", obama[0].read_bytes()),
                                      "b": ("b.jpg", jpeg(TEST / "alex_lacamoire1.jpg"))}, headers=AUTH)
    assert r.json()["same_person"] is False
    r = client.delete("/identities/obama", headers=AUTH)
    assert r.status_code == 200 and r.json()["deleted"] == 2
    assert client.delete("/identities/obama", headers=AUTH).json()["error"]["code"] == "not_found"
    r = client.post("/identify", files={"image": ("t.jpg", jpeg(TEST / "obama1.jpg"))}, headers=AUTH)
    assert r.json()["faces"][0]["identity"] == "unknown"


def test_tokens(client, tmp_path, pipeline):
    photo = {"image": ("t.jpg", jpeg(TEST / "obama1.jpg"))}
    assert client.get("/health").status_code == 200  # liveness needs no token
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for method, url, kw in (("post", "/enrol", {"files": photo, "data": {"identity": "x"}}),
                                ("delete", "/identities/x", {}), ("post", "/identify", {"files": photo})):
            r = getattr(client, method)(url, headers=headers, **kw)
            assert r.status_code == 401, (url, headers, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
    c, g = make_client(tmp_path / "public", pipeline, public_reads=True)
    with c:
        assert c.post("/identify", files=photo).status_code == 200           # reads open ...
        assert c.post("/enrol", files=photo, data={"identity": "x"}).status_code == 401  # ... writes never
    g.close()
    with pytest.raises(Exception, match="needs a token"):
        ServeSettings(token="", threshold=0.3)


def test_limits_and_bad_input(tmp_path, pipeline, face_jpg):
    c, g = make_client(tmp_path, pipeline, max_upload_bytes=200_000, max_pixels=1_000_000)
    with c:
        big = np.random.default_rng(0).integers(0, 255, (600, 600, 3), np.uint8)
        buf = io.BytesIO()
        Image.fromarray(big).save(buf, "PNG")  # ~1 MB of noise
        r = c.post("/identify", files={"image": ("big.png", buf.getvalue())}, headers=AUTH)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        buf = io.BytesIO()
        Image.new("RGB", (2000, 1000)).save(buf, "PNG")  # small file, too many pixels
        r = c.post("/identify", files={"image": ("wide.png", buf.getvalue())}, headers=AUTH)
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"
        assert "2000×1000" in r.json()["error"]["message"]
        r = c.post("/identify", files={"image": ("notes.txt", b"hello, not an image")}, headers=AUTH)
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_an_image"
        good = face_jpg.read_bytes()  # 250×250, well under both limits
        assert c.post("/identify", files={"image": ("ok.jpg", good)}, headers=AUTH).status_code == 200
        r = c.post("/identify", files={"image": ("cut.jpg", good[: len(good) // 3])}, headers=AUTH)
        assert r.status_code == 422 and "truncated" in r.json()["error"]["message"]
        from skimage import data
        buf = io.BytesIO()
        Image.fromarray(data.coffee()).save(buf, "JPEG")
        r = c.post("/identify", files={"image": ("coffee.jpg", buf.getvalue())}, headers=AUTH)
        assert r.status_code == 422 and r.json()["error"]["code"] == "no_face"
        r = c.post("/identify", headers=AUTH)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        r = c.post("/identify?k=0", files={"image": ("t.jpg", good)}, headers=AUTH)
        assert r.status_code == 422
        schema = c.get("/openapi.json").json()
        assert {"/verify", "/identify", "/enrol", "/identities/{identity}", "/health"} <= set(schema["paths"])
    g.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_faceforge_serve_on_loopback(tmp_path):
    import httpx
    port = free_port()
    env = {**os.environ, "FACEFORGE_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "faceforge.cli.main", "serve", "-g", str(tmp_path / "g.db"),
                             "--port", str(port), "--device", "cpu"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        assert r.json()["status"] == "ok" and r.json()["backend"] == "milvus"
        photo = jpeg(TRAIN / "obama" / sorted(os.listdir(TRAIN / "obama"))[0])
        r = httpx.post(f"http://127.0.0.1:{port}/enrol", files={"image": ("o.jpg", photo)},
                       data={"identity": "obama"}, headers=AUTH, timeout=60)
        assert r.status_code == 200 and r.json()["faces_added"] == 1
        r = httpx.post(f"http://127.0.0.1:{port}/enrol", files={"image": ("o.jpg", photo)},
                       data={"identity": "obama"}, timeout=60)
        assert r.status_code == 401
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"127.0.0.1:{port}" in out  # bound to loopback by default
