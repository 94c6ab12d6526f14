"""Where the optional real datasets live (read in place, never copied), and where FaceForge
keeps what it can rebuild (a cache)."""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]


def shared_data_dir() -> Path:
    """`$FACEFORGE_DATA`, else `../shared/data` beside the project checkout."""
    env = os.environ.get("FACEFORGE_DATA")
    return Path(env) if env else _REPO.parent / "shared" / "data"


def lfw_dir() -> Path:
    """`$FACEFORGE_LFW`, else the shared LFW folder (with `images/` and `pairs.txt`)."""
    env = os.environ.get("FACEFORGE_LFW")
    return Path(env) if env else shared_data_dir() / "lfw"


def cache_dir() -> Path:
    """`$FACEFORGE_CACHE`, else `$XDG_CACHE_HOME/faceforge`, else `~/.cache/faceforge`: files
    FaceForge derives from installed models and can always make again."""
    env = os.environ.get("FACEFORGE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "faceforge"
