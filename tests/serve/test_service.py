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
    r = client.delete("/identities", params={"identity": "obama"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["deleted"] == 2
    assert client.delete("/identities", params={"identity": "obama"}, headers=AUTH).json()["error"]["code"] \
        == "not_found"
    r = client.post("/identify", files={"image": ("t.jpg", jpeg(TEST / "obama1.jpg"))}, headers=AUTH)
    assert r.json()["faces"][0]["identity"] == "unknown"


def test_identify_has_its_own_threshold(tmp_path, pipeline):
    """Naming people from a gallery is a 1:N decision: the service can hold a stricter
    threshold for /identify than /verify's 1:1 one, and says which it uses."""
    need(TRAIN)
    c, g = make_client(tmp_path, pipeline, identify_threshold=0.99)
    with c:
        health = c.get("/health").json()
        assert health["identify_threshold"] == 0.99 and health["verify_threshold"] == pipeline.embedder.threshold
        enrol(c, "obama")
        r = c.post("/identify", files={"image": ("t.jpg", jpeg(TEST / "obama1.jpg"))}, headers=AUTH).json()
        assert r["threshold"] == 0.99 and r["faces"][0]["identity"] == "unknown"  # below 0.99
        obama = sorted((TRAIN / "obama").iterdir())
        v = c.post("/verify", files={"a": ("a.jpg", obama[0].read_bytes()), "b": ("b.jpg", jpeg(TEST / "obama1.jpg"))},
                   headers=AUTH).json()
        assert v["same_person"] is True and v["threshold"] == pipeline.embedder.threshold
    g.close()

def test_tokens(client, tmp_path, pipeline):
    photo = {"image": ("t.jpg", jpeg(TEST / "obama1.jpg"))}
    assert client.get("/health").status_code == 200  # liveness needs no token
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for method, url, kw in (("post", "/enrol", {"files": photo, "data": {"identity": "x"}}),
                                ("delete", "/identities?identity=x", {}), ("post", "/identify", {"files": photo}),
                                ("post", "/identities/rename", {"json": {"old": "x", "new": "y"}})):
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
        assert {"/verify", "/identify", "/enrol", "/identities", "/identities/rename", "/health"} \
            == set(schema["paths"])
    g.close()


@pytest.mark.parametrize("side", [9000, 12000, 15000, 40000])
def test_header_bomb_is_413_on_every_upload(client, side):
    from tests.io.test_images import _png_header
    bomb = ("bomb.png", _png_header(side, side), "image/png")
    for url, kw in (("/identify", {"files": {"image": bomb}}),
                    ("/verify", {"files": {"a": bomb, "b": bomb}}),
                    ("/enrol", {"files": {"image": bomb}, "data": {"identity": "x"}})):
        r = client.post(url, headers=AUTH, **kw)
        assert r.status_code == 413, (url, r.text)
        assert r.json()["error"]["code"] == "image_too_large"


NAMES = ["a/b", "../../etc/passwd", "100%", "%2F", "it's \"quoted\"", "tab\there", "new\nline", "nul\x00byte",
         "bell\x07", "名前 🙂", " spaced ", "?&=#", "x" * 256]


def test_any_identity_name_round_trips(client):
    photos = sorted(need(TRAIN / "obama").iterdir())
    for i, name in enumerate(NAMES):  # each name gets a photo of its own
        photo = photos[i % len(photos)]
        data = photo.read_bytes() + bytes([i])  # a trailing byte: another upload, the same face
        r = client.post("/enrol", files={"image": ("p.jpg", data)}, data={"identity": name}, headers=AUTH)
        assert r.status_code == 200 and r.json()["identity"] == name, (name, r.text)
    r = client.post("/identify", params={"k": 1}, files={"image": ("t.jpg", jpeg(TEST / "obama1.jpg"))},
                    headers=AUTH)
    assert r.json()["faces"][0]["identity"] in NAMES
    too_long = client.post("/enrol", files={"image": ("p.jpg", photos[0].read_bytes())},
                           data={"identity": "x" * 257}, headers=AUTH)
    assert too_long.status_code == 422
    r = client.post("/identities/rename", json={"old": "a/b", "new": "c/../d"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["moved"] == 1
    for name in ["c/../d", *NAMES[1:]]:
        r = client.delete("/identities", params={"identity": name}, headers=AUTH)
        assert r.status_code == 200 and r.json() == {"identity": name, "deleted": 1}, (name, r.text)
    r = client.delete("/identities", params={"identity": "a/b"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_concurrent_requests_are_batched_and_answered_as_one_at_a_time(tmp_path, pipeline):
    from concurrent.futures import ThreadPoolExecutor
    photos = [p for person in ("obama", "biden", "kit_harington", "rose_leslie") for p in
              sorted(need(TRAIN / person).iterdir())]
    tests = sorted(TEST.iterdir())
    answers, largest = {}, {}
    for mode, kw in (("serial", {"serial": True}), ("pool", {"max_batch": 4})):
        pipes = [pipeline] if mode == "serial" else [pipeline, FacePipeline(detector="yunet", embedder="sface",
                                                                             device="cpu")]
        g = open_gallery(f"faiss:{tmp_path / mode}")
        app = create_app(g, pipes, ServeSettings(token=TOKEN, threshold=pipeline.embedder.threshold, **kw))
        with TestClient(app) as c:
            for p in photos:
                c.post("/enrol", files={"image": (p.name, p.read_bytes())}, data={"identity": p.parent.name},
                       headers=AUTH)

            def ask(f):
                r = c.post("/identify", files={"image": (f.name, f.read_bytes())}, headers=AUTH)
                return f.name, r.status_code, [(x["identity"], round(x["score"] or 0, 4)) for x in
                                               r.json().get("faces", [])]
            with ThreadPoolExecutor(8) as ex:
                answers[mode] = sorted(ex.map(ask, tests * 4))
            largest[mode] = app.state.pool.largest_batch
        g.close()
    assert answers["pool"] == answers["serial"]
    assert largest["serial"] == 1 and largest["pool"] > 1, largest  # concurrent requests were batched
    assert {a[0] for a in answers["pool"] if a[1] == 200} == {f.name for f in tests}


def test_a_full_queue_is_refused_at_once(pipeline):
    from faceforge.io.images import load_image
    from faceforge.serve.workers import Job, ModelPool, PoolBusy
    image = load_image(TEST / "obama_and_biden.jpg")
    pool = ModelPool([pipeline], search=lambda *a: [], max_batch=1, max_queue=1)
    accepted, refused = [], 0
    for _ in range(6):  # far faster than one detection: the queue of one fills at once
        try:
            accepted.append(pool.submit(Job(image, "all")))
        except PoolBusy:
            refused += 1
    assert refused >= 3 and 1 <= len(accepted) <= 3
    assert all(len(f.result(timeout=60).faces) >= 2 for f in accepted)  # what was accepted is served
    pool.close()
    with pytest.raises(PoolBusy, match="shutting down"):
        pool.submit(Job(image, "all"))


def test_one_bad_job_does_not_fail_its_batch(pipeline):
    from faceforge.io.images import load_image
    from faceforge.serve.workers import Job, ModelPool
    good = load_image(TEST / "obama1.jpg")
    pool = ModelPool([pipeline], search=lambda *a: [], max_batch=8, max_queue=8)
    futures = [pool.submit(Job(im, "all")) for im in (good, np.zeros((10, 10), np.uint8), good)]  # a 2-D array
    assert len(futures[0].result(timeout=60).faces) == 1 and len(futures[2].result(timeout=60).faces) == 1
    with pytest.raises(Exception, match="H×W×3"):
        futures[1].result(timeout=60)
    pool.close()


def test_the_old_delete_route_says_where_it_went(client):
    r = client.delete("/identities/alice", headers=AUTH)
    assert r.status_code == 410 and "identity=" in r.json()["error"]["message"]


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
