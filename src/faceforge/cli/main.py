"""`faceforge` command line: parses arguments, calls the Python API, prints or writes.

Every command takes --json for machine-readable output on stdout. Each command group has
its own module; this one builds the app from them.
"""
from __future__ import annotations

from pathlib import Path

import typer

from faceforge.cli import data, faces, train
from faceforge.cli.collect import collect_app
from faceforge.cli.common import DeviceOpt, JsonOpt, _emit, _fail, out
from faceforge.cli.curate import curate_app
from faceforge.cli.eval import eval_app
from faceforge.cli.gallery import gallery_app
from faceforge.cli.landmarks import landmarks_app
from faceforge.cli.quality import quality_app
from faceforge.cli.serve import serve
from faceforge.core.errors import FaceForgeError

app = typer.Typer(help="FaceForge: detect, align, embed, compare and evaluate faces - offline.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(eval_app, name="eval")
app.add_typer(quality_app, name="quality")
app.add_typer(curate_app, name="curate")
app.add_typer(gallery_app, name="gallery")
app.add_typer(landmarks_app, name="landmarks")
app.add_typer(collect_app, name="collect")
app.command("serve")(serve)


@app.command()
def models(as_json: bool = JsonOpt) -> None:
    """List the registered components: detectors, embedders, backbones, heads, galleries, landmark networks."""
    from faceforge.landmarks.hourglass import LANDMARKERS
    from faceforge.models.backbones import BACKBONES
    from faceforge.models.embedders import EMBEDDERS
    from faceforge.models.heads.factory import HEADS
    from faceforge.search.gallery import GALLERIES
    from faceforge.vision.detectors import DETECTORS
    res = {kind: reg.choices() for kind, reg in (("detectors", DETECTORS), ("embedders", EMBEDDERS),
                                                ("backbones", BACKBONES), ("heads", HEADS), ("galleries", GALLERIES),
                                                ("landmark networks", LANDMARKERS))}
    if as_json:
        _emit(res, True)
    else:
        out.print("\n".join(f"{kind}: {', '.join(names)}" for kind, names in res.items()))


app.command()(faces.detect)
app.command()(faces.verify)
app.command()(faces.embed)
app.command()(faces.similarity)


@app.command()
def demo(output: Path = typer.Option(Path("demo-output"), "-o", "--output"),
         device: str = DeviceOpt,
         lfw: bool = typer.Option(True, "--lfw/--no-lfw", help="also run LFW when it is available"),
         as_json: bool = JsonOpt) -> None:
    """The main job: faces in bundled photos with both models, plus LFW when available."""
    from faceforge.demo import run_demo
    try:
        res = run_demo(output, device=device, lfw=lfw)
    except FaceForgeError as exc:
        _fail(exc, as_json)
    if as_json:
        _emit(res, True)
        return
    for model, r in res["models"].items():
        out.print(f"[bold]{model}[/bold]: faces in {', '.join(r['faces'])}; no face in {', '.join(r['no_face'])}; "
                  f"correct same/different decisions {r['correct_decisions']}")
    g = res["gallery"]
    named = {n: r["identity"] for n, r in g["identified"].items() if isinstance(r, dict)}
    out.print(f"gallery {g['gallery']} ({g['records']} enrolled faces): " + ", ".join(f"{n} → {i}" for n, i in named.items()))
    lfw_res = res["lfw"]
    if isinstance(lfw_res, dict):
        out.print(f"LFW ({lfw_res['model']}): {100 * lfw_res['accuracy_mean']:.2f} ± "
                  f"{100 * lfw_res['accuracy_std']:.2f} % over 10 folds, {lfw_res['no_face_found']} images without a detection")
    else:
        out.print(f"LFW {lfw_res}")
    out.print(f"outputs in {res['output_dir']}/ (verification.json, similarity_*.png, gallery.db, lfw.json, "
              "lfw_roc.png)")


app.command()(train.train)
app.command("bn-finetune")(train.bn_finetune)
app.command()(data.prepare)
app.command()(data.split)
app.command()(train.export)


@app.command("install-weights")
def install_weights() -> None:
    """Extract the MTCNN weights from the facenet-pytorch wheel (pip download, once)."""
    from faceforge.vision.detectors.mtcnn import install_mtcnn_weights
    out.print(f"MTCNN weights in {install_mtcnn_weights()}")


if __name__ == "__main__":  # after every command is registered
    app()
