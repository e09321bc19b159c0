"""Frame sources: video files and cameras, yielding RGB frames with millisecond timestamps."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from edgepose._optional import require
from edgepose.errors import SourceError

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One frame: ``image`` (H, W, 3) uint8 RGB, ``timestamp_ms`` and 0-based ``index``."""

    image: np.ndarray
    timestamp_ms: int
    index: int


class VideoFileSource:
    """Reads a video file; timestamps are index / fps (container timestamps are unreliable).

    Args:
        path: the video file.
        max_frames: stop after this many frames (None: all).
        start: first frame index to read.
    """

    def __init__(self, path: str | os.PathLike, *, max_frames: int | None = None, start: int = 0):
        cv2 = require("cv2", "base", package="opencv-python-headless")
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise SourceError(f"video file not found: {self.path!r}; check the path")
        self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            raise SourceError(f"OpenCV cannot open {self.path!r} as a video (unsupported codec or not a video)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.max_frames = max_frames
        self.start = start
        if start:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        self._cv2 = cv2

    def __len__(self) -> int:
        n = max(0, (self.frame_count or 0) - self.start)
        return min(n, self.max_frames) if self.max_frames is not None else n

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while self.max_frames is None or i < self.max_frames:
            ok, bgr = self._cap.read()
            if not ok:
                break
            idx = self.start + i
            yield Frame(self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB),
                        int(round(idx * 1000.0 / self.fps)), idx)
            i += 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CameraSource:
    """Reads an OpenCV camera (index or device path); timestamps from the capture clock.

    Args:
        device: camera index (0) or device path (/dev/video0) or a GStreamer pipeline string.
        width, height, fps: requested capture settings (the driver may pick others).
        max_frames: stop after this many frames (None: until closed).
    """

    def __init__(self, device: int | str = 0, *, width: int | None = None,
                 height: int | None = None, fps: float | None = None, max_frames: int | None = None):
        cv2 = require("cv2", "base", package="opencv-python-headless")
        self._cv2 = cv2
        api = cv2.CAP_GSTREAMER if isinstance(device, str) and "!" in device else cv2.CAP_ANY
        self._cap = cv2.VideoCapture(device, api)
        if not self._cap.isOpened():
            raise SourceError(
                f"cannot open camera {device!r}: no such device, busy, or no permission. "
                "List cameras with 'v4l2-ctl --list-devices'; pass an index (0) or a path (/dev/video0)"
            )
        for prop, v in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                        (cv2.CAP_PROP_FPS, fps)):
            if v:
                self._cap.set(prop, v)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.max_frames = max_frames
        self.frame_count = None
        self._t0 = None

    def __len__(self) -> int:
        return self.max_frames or 0

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while self.max_frames is None or i < self.max_frames:
            ok, bgr = self._cap.read()
            now = time.monotonic()
            if not ok:
                log.warning("camera returned no frame; stopping")
                break
            if self._t0 is None:
                self._t0 = now
            yield Frame(self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB),
                        int(round((now - self._t0) * 1000)), i)
            i += 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_source(spec: str | int, *, max_frames: int | None = None):
    """Open a camera (an int, or a string of digits, or /dev/video*) or a video file."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CameraSource(int(spec), max_frames=max_frames)
    if isinstance(spec, str) and (spec.startswith("/dev/video") or "!" in spec):
        return CameraSource(spec, max_frames=max_frames)
    return VideoFileSource(spec, max_frames=max_frames)
