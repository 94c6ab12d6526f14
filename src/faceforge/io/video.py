"""Video frames as RGB arrays (OpenCV's decoder), every n-th one."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from faceforge.core.errors import FaceForgeError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def video_frames(path: str | Path, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time in seconds, H×W×3 RGB uint8) for frames 0, every, 2·every, …"""
    if every < 1:
        raise FaceForgeError(f"every must be ≥ 1, got {every}")
    path = Path(path)
    if not path.is_file():
        raise FaceForgeError("video file not found", path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FaceForgeError("cannot open as a video (unknown or corrupt format)", path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    try:
        i, read_any = 0, False
        while True:
            if i % every:
                if not cap.grab():
                    break
            else:
                ok, frame = cap.read()
                if not ok:
                    break
                read_any = True
                yield i, (i / fps if fps > 0 else 0.0), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
        if not read_any:
            raise FaceForgeError("no frame could be decoded", path)
    finally:
        cap.release()
