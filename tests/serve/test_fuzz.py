"""Schemathesis against the service's own OpenAPI schema: requests generated from it, valid
(positive) and not (negative), for every operation, with and without the token; none may
answer 5xx."""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (test extra) is not installed")
pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from faceforge.pipeline import FacePipeline  # noqa: E402
from faceforge.search.gallery import open_gallery  # noqa: E402
from faceforge.serve import ServeSettings, create_app  # noqa: E402
from tests.conftest import DATA, need  # noqa: E402

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    g = open_gallery(f"faiss:{tmp_path_factory.mktemp('fuzz') / 'g'}")
    pipe = FacePipeline(detector="yunet", embedder="sface", device="cpu")
    app = create_app(g, pipe, ServeSettings(token=TOKEN, threshold=0.363, max_upload_bytes=1 << 20))
    photo = sorted((need(DATA / "small_ids" / "train" / "obama")).iterdir())[0]
    with TestClient(app) as c:  # one real identity, so identify/delete reach the gallery
        assert c.post("/enrol", files={"image": ("o.jpg", photo.read_bytes())}, data={"identity": "obama"},
                      headers=AUTH).status_code == 200
    yield app
    g.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors(app, mode):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 6
    if mode == GenerationMode.NEGATIVE:  # an operation without inputs has no invalid request
        operations = [op for op in operations if op.label != "GET /health"]
    calls: dict[str, int] = {}
    for op in operations:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            for headers in (AUTH, {}):
                response = case.call(headers=headers)
                assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
                calls[op.label] = calls.get(op.label, 0) + 1
        run()
    assert len(calls) == len(operations) and min(calls.values()) >= 2, calls
