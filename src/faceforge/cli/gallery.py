"""`faceforge gallery enrol|identify|delete|rename|stats|export`."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import typer

from faceforge.cli.common import (BatchOpt, DetectorOpt, DeviceOpt, JsonOpt, OverwriteOpt, _emit, _fail, _pipeline,
                                  claim, err, out)
from faceforge.core.errors import FaceForgeError

gallery_app = typer.Typer(help="Galleries of enrolled faces: Milvus Lite file (default), Milvus server, or FAISS.",
                          no_args_is_help=True)

GalleryOpt = typer.Option("gallery.db", "--gallery", "-g", envvar="FACEFORGE_GALLERY",
                          help="FILE.db (Milvus Lite) | http(s)://HOST:PORT (Milvus server) | faiss:DIR")
CollectionOpt = typer.Option("faces", "--collection", help="Milvus collection")
TokenOpt = typer.Option("", "--token", envvar="FACEFORGE_MILVUS_TOKEN", help="Milvus server token (user:password)")
IndexOpt = typer.Option("flat", "--index", help="flat | hnsw | ivf for a new gallery (an existing one keeps its own)")


@contextlib.contextmanager
def _open(uri: str, collection: str, token: str, index: str, device: str, as_json: bool) -> Iterator:
    from faceforge.search.gallery import open_gallery
    try:
        g = open_gallery(uri, collection=collection, token=token, index=index, device=device)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    try:
        yield g
    finally:
        g.close()


@gallery_app.command("enrol")
def enrol(sources: list[Path] = typer.Argument(..., help="folders (identity = sub-folder), images, or one .parquet"),
          gallery: str = GalleryOpt, collection: str = CollectionOpt, token: str = TokenOpt, index: str = IndexOpt,
          identity: Optional[str] = typer.Option(None, "--identity", help="identity of image files given directly"),
          detector: str = DetectorOpt,
          model: str = typer.Option("sface", "--model", "-m", help="sface | dlib-r29 | onnx:PATH"),
          device: str = DeviceOpt, batch_size: int = BatchOpt,
          select: str = typer.Option("largest", "--select", help="largest | central | all: faces per image"),
          min_quality: Optional[float] = typer.Option(None, "--min-quality", help="Parquet rows: keep quality ≥ this"),
          as_json: bool = JsonOpt) -> None:
    """Enrol faces, batched and resumable: files already in the gallery (same path and content) are skipped."""
    from faceforge.io.images import list_images
    from faceforge.search.enrol import enrol_files, enrol_folder, enrol_parquet
    try:  # a source with nothing to enrol is refused before a new gallery is created for it
        for src in sources:
            if src.suffix != ".parquet":
                list_images(src)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    results = []
    with _open(gallery, collection, token, index, device, as_json) as g:
        try:
            for src in sources:
                if src.suffix == ".parquet":
                    results.append(enrol_parquet(g, src, min_quality=min_quality))
                    continue
                pipe = _pipeline(detector, model, device, batch_size)
                if src.is_dir():
                    results.append(enrol_folder(g, pipe, src, select))
                elif identity is None:
                    raise FaceForgeError("an image given directly needs --identity", src)
                else:
                    results.append(enrol_files(g, pipe, [src], lambda _p: identity, select))
        except FaceForgeError as exc:
            _fail(exc, as_json)
        stats = g.stats()
    if as_json:
        _emit({"enrolled": results, "gallery": stats}, True)
        return
    for r in results:
        out.print(f"{r['faces_added']} faces added ({r['already_enrolled']} already enrolled)")
        for s in r.get("skipped", []):
            err.print(f"[yellow]skip[/yellow] {s['path']}: {s['reason']}")
    out.print(f"{stats['uri']}: {stats['records']} faces of {stats['identities']} identities ({stats['model']})")


@gallery_app.command("identify")
def identify(sources: list[Path] = typer.Argument(..., help="images, folders of images, or video files"),
             gallery: str = GalleryOpt, collection: str = CollectionOpt, token: str = TokenOpt,
             k: int = typer.Option(1, "--k", min=1, help="top-K majority vote"),
             threshold: Optional[float] = typer.Option(None, "--threshold", help="accept when score ≥ this"),
             eval_json: Optional[Path] = typer.Option(None, "--eval-json", help="take the threshold from this "
                                                      "evaluation result (faceforge eval ... metrics.json)"),
             fpr: float = typer.Option(1e-3, "--fpr", help="with --eval-json: the target false-positive identification rate (share of people not "
                                   "enrolled who get a name); a 1:1 evaluation is read at FPR / gallery faces"),
             method: Optional[str] = typer.Option(None, "--method", help="with --eval-json: which result"),
             min_quality: Optional[float] = typer.Option(None, "--min-quality", help="search only records with quality ≥"),
             every: int = typer.Option(10, "--every", min=1, help="videos: every n-th frame"),
             hits: bool = typer.Option(False, "--hits", help="include the top-K hits"),
             detector: str = DetectorOpt,
             model: Optional[str] = typer.Option(None, "--model", "-m", help="default: the gallery's model"),
             device: str = DeviceOpt, batch_size: int = BatchOpt, as_json: bool = JsonOpt) -> None:
    """Who is in these images or videos? 'unknown' below the threshold (default: the model's)."""
    from faceforge.search.workflow import identify_sources, resolve_threshold
    with _open(gallery, collection, token, "flat", device, as_json) as g:
        try:
            if g.model is None:
                raise FaceForgeError("the gallery is empty: enrol faces first", g.uri)
            pipe = _pipeline(detector, model or g.model, device, batch_size)
            thr = resolve_threshold(pipe, threshold, eval_json, fpr, method, gallery_size=len(g))
            results = list(identify_sources(g, pipe, sources, every, k=k, threshold=thr, min_quality=min_quality,
                                            with_hits=hits))
        except FaceForgeError as exc:
            _fail(exc, as_json)
    if as_json:
        _emit({"threshold": thr, "k": k, "results": results}, True)
        return
    for r in results:
        where = r["source"] + (f" @ frame {r['frame']} ({r['time_s']} s)" if "frame" in r else "")
        if "skipped" in r:
            err.print(f"[yellow]skip[/yellow] {where}: {r['skipped']}")
            continue
        names = ", ".join(f"{f['identity']} ({f['score']:.3f})" if f["score"] is not None else f["identity"]
                          for f in r["faces"])
        out.print(f"{where}: {names}")


@gallery_app.command("delete")
def delete(identity: str, gallery: str = GalleryOpt, collection: str = CollectionOpt, token: str = TokenOpt,
           as_json: bool = JsonOpt) -> None:
    """Remove every face of an identity."""
    with _open(gallery, collection, token, "flat", "cpu", as_json) as g:
        n = g.delete_identity(identity)
    _emit({"identity": identity, "deleted": n}, as_json)
    if not as_json:
        out.print(f"deleted {n} faces of {identity}")


@gallery_app.command("rename")
def rename(old: str, new: str, gallery: str = GalleryOpt, collection: str = CollectionOpt, token: str = TokenOpt,
           as_json: bool = JsonOpt) -> None:
    """Rename an identity (merging into NEW if it exists)."""
    with _open(gallery, collection, token, "flat", "cpu", as_json) as g:
        try:
            n = g.rename_identity(old, new)
        except FaceForgeError as exc:
            _fail(exc, as_json)
    _emit({"old": old, "new": new, "moved": n}, as_json)
    if not as_json:
        out.print(f"moved {n} faces from {old} to {new}")


@gallery_app.command("stats")
def stats(gallery: str = GalleryOpt, collection: str = CollectionOpt, token: str = TokenOpt,
          top: int = typer.Option(10, "--top", min=0, help="largest identities to list"),
          as_json: bool = JsonOpt) -> None:
    """Records, identities, model and the largest identities."""
    with _open(gallery, collection, token, "flat", "cpu", as_json) as g:
        res = g.stats()
        counts = g.identity_counts()
    res["largest"] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top])
    if as_json:
        _emit(res, True)
        return
    out.print(f"{res['uri']} ({res['backend']}): {res['records']} faces, {res['identities']} identities, "
              f"model {res['model']} ({res['dim']}-d)")
    for name, n in res["largest"].items():
        out.print(f"  {n:6d}  {name}")


@gallery_app.command("export")
def export(output: Path = typer.Argument(..., help="output .parquet (key, identity, path, quality, model, embedding)"),
           gallery: str = GalleryOpt, collection: str = CollectionOpt, token: str = TokenOpt,
           overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt) -> None:
    """Write every record with its vector to Parquet (readable by faceforge eval / curate)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from faceforge.core.files import atomic_write
    from faceforge.search.gallery import EXPORT_SCHEMA
    claim(as_json, overwrite, output)
    with _open(gallery, collection, token, "flat", "cpu", as_json) as g:
        tables = list(g.iter_batches())
    table = pa.concat_tables(tables) if tables else EXPORT_SCHEMA.empty_table()
    with atomic_write(output, "wb") as fh:
        pq.write_table(table, fh)
    _emit({"output": str(output), "records": len(table)}, as_json)
    if not as_json:
        out.print(f"{len(table)} records → {output}")
