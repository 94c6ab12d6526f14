"""Video frames as RGB arrays (OpenCV's decoder), every n-th one: from a file, a camera
(its index), a network stream (rtsp://, http://) or a folder of frame images."""
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
    read_any = False
    for item in _capture_frames(cap, every):
        read_any = True
        yield item
    if not read_any:
        raise FaceForgeError("no frame could be decoded", path)


def _capture_frames(cap: cv2.VideoCapture, every: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """Every n-th frame of an opened capture (the others only grabbed, not decoded), until it
    ends; the capture is released when the loop stops, however it stops."""
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    try:
        i = 0
        while True:
            if i % every:
                if not cap.grab():
                    break
            else:
                ok, frame = cap.read()
                if not ok:
                    break
                yield i, (i / fps if fps > 0 else 0.0), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()


def _is_stream(source: str) -> bool:
    return "://" in source


def frame_sources_kind(source: str | Path) -> str:
    """'camera' (an integer), 'stream' (a URL), 'folder' (of frame images) or 'file'."""
    text = str(source)
    if text.isdigit():
        return "camera"
    if _is_stream(text):
        return "stream"
    return "folder" if Path(text).is_dir() else "file"


def open_frames(source: str | Path, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time in seconds, RGB frame) from any source `frame_sources_kind` knows.
    A folder's images are its frames in name order (time = index / 25 s, the PAL rate, since
    a folder has none); a camera or stream runs until it ends or the caller stops reading."""
    kind = frame_sources_kind(source)
    if kind == "file":
        yield from video_frames(source, every)
        return
    if every < 1:
        raise FaceForgeError(f"every must be ≥ 1, got {every}")
    if kind == "folder":
        from faceforge.io.images import list_images, load_image
        for i, path in enumerate(list_images(source)):
            if i % every == 0:
                yield i, i / 25.0, load_image(path)
        return
    cap = cv2.VideoCapture(int(str(source)) if kind == "camera" else str(source))
    if not cap.isOpened():
        raise FaceForgeError(f"cannot open {kind} {source}")
    yield from _capture_frames(cap, every)
