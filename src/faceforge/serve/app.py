"""The REST service (FastAPI): verify two photos, identify the faces of one against a gallery,
enrol, delete an identity. A thin layer over faceforge.pipeline and faceforge.search.

Safe by default: `faceforge serve` binds 127.0.0.1; every write needs the bearer token, and so
does every read unless reads are made public; uploads and image dimensions are capped before
anything is decoded; every error is JSON: {"error": {"status", "code", "message"}}.

Concurrent requests decode their uploads in parallel and share a pool of model workers that
batches them (faceforge.serve.workers); `serial=True` handles one request at a time instead,
the way to compare. Identity names are data: any string of 1..256 characters, sent in form
fields, query parameters or JSON bodies, never in the URL path.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from fastapi import Body, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from faceforge.core.errors import FaceForgeError, ImageTooLargeError
from faceforge.io.images import decode_image, image_size
from faceforge.pipeline import FacePipeline
from faceforge.search.gallery import Gallery, Records, content_key
from faceforge.serve.workers import Job, JobResult, ModelPool, PoolBusy, gallery_search

MiB = 1 << 20
MAX_IDENTITY = 256  # characters of an identity name


@dataclass
class ServeSettings:
    token: str
    threshold: float                        # /verify: a 1:1 decision
    identify_threshold: float | None = None  # /identify (1:N); None: `threshold`
    public_reads: bool = False
    max_upload_bytes: int = 10 * MiB
    max_pixels: int = 40_000_000   # width × height of one image
    max_side: int = 10_000         # pixels, either side
    k: int = 1
    max_batch: int = 8             # requests one model worker serves in one pass
    max_queue: int = 64            # requests waiting for a worker before 503
    serial: bool = False           # one request at a time, decoding included

    def __post_init__(self) -> None:
        if not self.token:
            raise FaceForgeError("the service needs a token: writes are never open")


class ApiError(HTTPException):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


class Health(BaseModel):
    status: str
    model: str
    gallery: str
    backend: str
    dim: Optional[int]
    verify_threshold: float
    identify_threshold: float


class FaceResult(BaseModel):
    box: list[float]
    det_score: float
    identity: str = Field(description="'unknown' when below the threshold or no decision")
    score: Optional[float]
    accepted: bool
    candidate: Optional[str]


class IdentifyResult(BaseModel):
    threshold: float
    k: int
    faces: list[FaceResult]


class VerifyResult(BaseModel):
    score: float
    threshold: float
    same_person: bool
    model: str


class EnrolResult(BaseModel):
    identity: str
    faces_added: int
    already_enrolled: bool


class DeleteResult(BaseModel):
    identity: str
    deleted: int


class RenameRequest(BaseModel):
    old: str = Field(min_length=1, max_length=MAX_IDENTITY)
    new: str = Field(min_length=1, max_length=MAX_IDENTITY)


class RenameResult(BaseModel):
    old: str
    new: str
    moved: int


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "code": code, "message": message}}, status_code=status)


class _BodyLimit:
    """ASGI middleware: 413 for a request body over the limit, by its declared length or, for
    a chunked body, as soon as the bytes received pass it."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        message = f"request body over {self.limit} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error(413, "payload_too_large", message)(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:  # an HTTPException passes FastAPI's body parsing as it is
                    raise ApiError(413, "payload_too_large", message)
            return msg

        await self.app(scope, counting_receive, send)


def create_app(gallery: Gallery, pipeline: FacePipeline | Sequence[FacePipeline], settings: ServeSettings) -> FastAPI:
    """The service over one gallery. Give several pipelines (equal, one per worker thread) to
    serve that many batches at once."""
    pipelines = [pipeline] if isinstance(pipeline, FacePipeline) else list(pipeline)
    model = pipelines[0].embedder.name
    gallery_lock = threading.Lock()  # the gallery client is used by one thread at a time
    serial_lock = asyncio.Lock()     # awaited, so a waiting request holds no thread
    identify_at = settings.threshold if settings.identify_threshold is None else settings.identify_threshold
    pool = ModelPool(pipelines, gallery_search(gallery, gallery_lock, identify_at, model),
                     max_batch=settings.max_batch, max_queue=settings.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.close()

    app = FastAPI(title="FaceForge", version="1", lifespan=lifespan,
                  description="Face verification and identification against a gallery. "
                  "Send `Authorization: Bearer <token>`.")
    app.state.pool = pool  # for inspection (tests, monitoring)
    bearer = HTTPBearer(auto_error=False)

    def _check(cred: HTTPAuthorizationCredentials | None) -> None:
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), settings.token.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    def need_write(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        _check(cred)

    def need_read(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not settings.public_reads:
            _check(cred)

    async def one_at_a_time():
        """With `serial`, a request holds the service from decoding its upload to its answer."""
        if not settings.serial:
            yield
            return
        async with serial_lock:
            yield

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException):
        code = getattr(exc, "code", {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                                     413: "payload_too_large"}.get(exc.status_code, "http_error"))
        resp = _error(exc.status_code, code, str(exc.detail))
        if exc.status_code == 401:
            resp.headers["WWW-Authenticate"] = "Bearer"
        if exc.status_code == 503:
            resp.headers["Retry-After"] = "1"
        return resp

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        return _error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    def decode(data: bytes, name: str) -> np.ndarray:
        """The decoded image; the dimensions are checked from the header first, so nothing
        over the limits is ever decoded."""
        try:
            w, h = image_size(data, name)
            if w * h > settings.max_pixels or max(w, h) > settings.max_side:
                raise ImageTooLargeError(f"{w}×{h} exceeds the limit ({settings.max_pixels} pixels, "
                                         f"{settings.max_side} per side)", name)
            return decode_image(data, name)
        except ImageTooLargeError as exc:
            raise ApiError(413, "image_too_large", str(exc)) from None
        except FaceForgeError as exc:
            raise ApiError(422, "not_an_image", str(exc)) from None

    async def read_upload(upload: UploadFile, field: str) -> tuple[bytes, np.ndarray]:
        """The uploaded bytes and the image, decoded in a worker thread (never on the loop)."""
        data = await upload.read()
        return data, await run_in_threadpool(decode, data, f"{field} ({upload.filename or 'upload'})")

    def submit(image: np.ndarray, select: str, **kw) -> asyncio.Future:
        """Queue a job for the model pool; the answer is awaited, so a waiting request holds
        no thread, and a full queue is refused at once."""
        try:
            return asyncio.wrap_future(pool.submit(Job(image, select, **kw)))
        except PoolBusy as exc:
            raise ApiError(503, "busy", f"the service is busy ({exc}); retry shortly") from None

    async def faces(future: asyncio.Future, field: str) -> JobResult:
        res = await future
        if res is None:
            raise ApiError(422, "no_face", f"{field}: no face found")
        return res

    async def in_gallery(fn, *args):
        """A gallery call, in a worker thread, one at a time."""
        def locked():
            with gallery_lock:
                return fn(*args)
        return await run_in_threadpool(locked)

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        """Liveness and what is served (no token needed)."""
        return Health(status="ok", model=model, gallery=gallery.uri, backend=gallery.backend, dim=gallery.dim,
                      verify_threshold=settings.threshold, identify_threshold=identify_at)

    @app.post("/verify", response_model=VerifyResult, tags=["faces"],
              dependencies=[Depends(need_read), Depends(one_at_a_time)])
    async def verify(a: UploadFile = File(..., description="first photo"),
                     b: UploadFile = File(..., description="second photo")) -> VerifyResult:
        """Are the largest faces of two photos the same person?"""
        ia, ib = (await read_upload(a, "a"))[1], (await read_upload(b, "b"))[1]
        fa = submit(ia, "largest")
        fb = submit(ib, "largest")
        ea, eb = (await faces(fa, "a")).embeddings[0], (await faces(fb, "b")).embeddings[0]
        score = float(np.dot(ea, eb))
        return VerifyResult(score=score, threshold=settings.threshold, same_person=score >= settings.threshold,
                            model=model)

    @app.post("/identify", response_model=IdentifyResult, tags=["gallery"],
              dependencies=[Depends(need_read), Depends(one_at_a_time)])
    async def identify_faces(image: UploadFile = File(..., description="a photo"),
                             k: int = Query(settings.k, ge=1, le=100, description="top-K majority vote"),
                             min_quality: Optional[float] = Query(None, ge=0, le=100,
                                                                  description="search only records of this quality")
                             ) -> IdentifyResult:
        """Who are the faces in this photo? 'unknown' below the threshold."""
        img = (await read_upload(image, "image"))[1]
        res = await faces(submit(img, "all", identify=True, k=k, min_quality=min_quality), "image")
        return IdentifyResult(threshold=identify_at, k=k, faces=[
            FaceResult(box=[float(x) for x in f.box], det_score=float(f.score), **d.to_dict(with_hits=False))
            for f, d in zip(res.faces, res.decisions)])

    @app.post("/enrol", response_model=EnrolResult, tags=["gallery"],
              dependencies=[Depends(need_write), Depends(one_at_a_time)])
    async def enrol(image: UploadFile = File(..., description="a photo of one person (its largest face is used)"),
                    identity: str = Form(..., min_length=1, max_length=MAX_IDENTITY,
                                         description="any text; it is stored as given")) -> EnrolResult:
        """Add the largest face of a photo to an identity (the same photo twice is stored once)."""
        data, img = await read_upload(image, "image")
        embs = (await faces(submit(img, "largest"), "image")).embeddings
        path = f"upload/{hashlib.sha256(data).hexdigest()[:16]}"
        added = await in_gallery(gallery.add, Records([identity], [path], [content_key(path, data)], [0], embs[:1]),
                                 model)
        return EnrolResult(identity=identity, faces_added=added, already_enrolled=added == 0)

    @app.delete("/identities", response_model=DeleteResult, tags=["gallery"],
                dependencies=[Depends(need_write), Depends(one_at_a_time)])
    async def delete_identity(identity: str = Query(..., min_length=1, max_length=MAX_IDENTITY,
                                                    description="the identity, as enrolled")) -> DeleteResult:
        """Remove every face of an identity."""
        n = await in_gallery(gallery.delete_identity, identity)
        if n == 0:
            raise ApiError(404, "not_found", f"no identity {identity!r} in the gallery")
        return DeleteResult(identity=identity, deleted=n)

    @app.post("/identities/rename", response_model=RenameResult, tags=["gallery"],
              dependencies=[Depends(need_write), Depends(one_at_a_time)])
    async def rename_identity(req: RenameRequest = Body(...)) -> RenameResult:
        """Move every face of `old` to `new` (merging into `new` if it exists)."""
        n = await in_gallery(gallery.rename_identity, req.old, req.new)
        if n == 0:
            raise ApiError(404, "not_found", f"no identity {req.old!r} in the gallery")
        return RenameResult(old=req.old, new=req.new, moved=n)

    @app.delete("/identities/{anything:path}", include_in_schema=False)
    async def moved_delete(anything: str):
        """The first version's route: an identity in the URL path could not hold '/'."""
        raise ApiError(410, "moved", "DELETE /identities/{identity} is gone: send DELETE "
                       "/identities?identity=<name> (the name as a query parameter)")

    app.add_middleware(_BodyLimit, limit=settings.max_upload_bytes)
    return app
