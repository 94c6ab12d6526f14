"""`faceforge serve`: the REST service on uvicorn."""
from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Optional

import typer

from faceforge.cli.common import BatchOpt, DetectorOpt, DeviceOpt, _fail, _pipeline, err
from faceforge.cli.gallery import CollectionOpt, GalleryOpt, TokenOpt
from faceforge.core.errors import FaceForgeError


def serve(gallery: str = GalleryOpt, collection: str = CollectionOpt, milvus_token: str = TokenOpt,
          host: str = typer.Option("127.0.0.1", "--host", help="bind address (loopback unless you mean otherwise)"),
          port: int = typer.Option(8000, "--port", min=0, max=65535),
          token: Optional[str] = typer.Option(None, "--token", envvar="FACEFORGE_TOKEN",
                                              help="bearer token clients must send (default: a new random one, printed)"),
          public_reads: bool = typer.Option(False, "--public-reads", help="no token needed for /verify and /identify"),
          max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", min=0.001, help="largest request body"),
          max_megapixels: float = typer.Option(40.0, "--max-megapixels", min=0.001, help="largest image"),
          k: int = typer.Option(1, "--k", min=1, help="default top-K for /identify"),
          threshold: Optional[float] = typer.Option(None, "--threshold", help="default: the model's"),
          eval_json: Optional[Path] = typer.Option(None, "--eval-json", help="thresholds from this evaluation"),
          fpr: float = typer.Option(1e-3, "--fpr", help="with --eval-json: the false-positive rate of /verify "
                                    "and the false-positive identification rate of /identify (whose threshold "
                                    "is set for the gallery's size at start: see `gallery identify --fpr`)"),
          detector: str = DetectorOpt,
          model: Optional[str] = typer.Option(None, "--model", "-m", help="default: the gallery's, else sface"),
          workers: int = typer.Option(2, "--workers", min=1, help="model worker threads (each its own detector "
                                      "and network; the cores are shared between them)"),
          max_batch: int = typer.Option(8, "--max-batch", min=1, help="waiting requests one worker serves at once"),
          max_queue: int = typer.Option(64, "--max-queue", min=1, help="waiting requests before answering 503"),
          serial: bool = typer.Option(False, "--serial", help="one request at a time on one worker (for comparison)"),
          device: str = DeviceOpt, batch_size: int = BatchOpt) -> None:
    """Serve verify / identify / enrol / delete over HTTP (OpenAPI schema at /docs and /openapi.json)."""
    from faceforge.pipeline import FacePipeline
    from faceforge.search.gallery import open_gallery
    from faceforge.search.workflow import resolve_threshold

    try:
        from faceforge.core.extras import require
        uvicorn = require("uvicorn", "serve", "the REST service (faceforge serve)")
        from faceforge.serve.app import MiB, ServeSettings, create_app
        g = open_gallery(gallery, collection=collection, token=milvus_token)
        spec = model or g.model or "sface"  # as given (an onnx:PATH keeps its whole path)
        pipe = _pipeline(detector, spec, device, batch_size)
        thr = resolve_threshold(pipe, threshold, eval_json, fpr)
        # naming people compares a face with every gallery face: from an evaluation its threshold
        # is not the 1:1 one (given or the model's, the two are the same)
        thr_identify = resolve_threshold(pipe, threshold, eval_json, fpr, gallery_size=len(g))
        if not token:
            token = secrets.token_urlsafe(24)
            err.print(f"token (send as 'Authorization: Bearer …'): {token}")
        settings = ServeSettings(token=token, threshold=thr, identify_threshold=thr_identify,
                                 public_reads=public_reads,
                                 max_upload_bytes=int(max_upload_mb * MiB),
                                 max_pixels=int(max_megapixels * 1e6), k=k, max_batch=max_batch,
                                 max_queue=max_queue, serial=serial)
        n_workers = 1 if serial else workers  # a pipeline per worker thread
        extra = [FacePipeline(detector=detector, embedder=spec, device=device, batch_size=batch_size)
                 for _ in range(n_workers - 1)]
        app = create_app(g, [pipe, *extra], settings)
    except FaceForgeError as exc:
        _fail(exc, False)
    try:
        if not ipaddress.ip_address(host).is_loopback:
            err.print(f"[yellow]warning:[/yellow] listening on {host}: reachable from other machines")
    except ValueError:
        pass  # a host name
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        g.close()
