"""The demo clip made by edgepose from a public-domain still (no video download needed).

The still is NASA's portrait of astronaut Eileen Collins (public domain; the picture scikit-image
ships as ``astronaut.png``), stored in the package as ``edgepose/data/astronaut.jpg``, so the demo
needs no download. The clip moves a virtual camera over it: pan, zoom and a slow
roll, so tracking, re-cropping and smoothing all have work to do.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from edgepose._optional import require
from edgepose.errors import EdgePoseError

#: Frames, size and rate of the demo clip (3 s at 30 fps, VGA: what a Pi camera gives).
DEMO_FRAMES = 90
DEMO_SIZE = (640, 480)
DEMO_FPS = 30.0


def demo_frames(still_rgb: np.ndarray, *, n: int = DEMO_FRAMES, size=DEMO_SIZE):
    """Yield ``n`` RGB frames of a moving virtual camera over ``still_rgb``."""
    cv2 = require("cv2", "base", package="opencv-python-headless")
    h, w = still_rgb.shape[:2]
    out_w, out_h = size
    for i in range(n):
        t = i / max(1, n - 1)
        zoom = 0.6 + 0.25 * math.sin(math.pi * t)            # 0.6 -> 0.85 -> 0.6
        angle = 8.0 * math.sin(2 * math.pi * t)              # +-8 degrees roll
        dx = 60.0 * math.sin(2 * math.pi * t)                # pan left/right
        dy = 20.0 * math.cos(2 * math.pi * t)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom * out_h / h)
        m[0, 2] += out_w / 2 - w / 2 + dx
        m[1, 2] += out_h / 2 - h / 2 + dy
        yield cv2.warpAffine(still_rgb, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40))


def make_demo_clip(still_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the demo clip (mp4) made from ``still_path``; returns ``out_path``."""
    cv2 = require("cv2", "base", package="opencv-python-headless")
    bgr = cv2.imread(os.fspath(still_path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EdgePoseError(f"cannot read the demo still {os.fspath(still_path)!r}; run 'edgepose fetch'")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(os.fspath(out_path), cv2.VideoWriter_fourcc(*"mp4v"), DEMO_FPS, DEMO_SIZE)
    if not writer.isOpened():
        raise EdgePoseError(f"OpenCV cannot write {str(out_path)!r} (mp4v codec missing?)")
    try:
        for frame in demo_frames(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return out_path


#: The demo still inside the package (NASA, public domain; see edgepose/data/NOTICE.md).
DEMO_STILL = Path(__file__).resolve().parent / "data" / "astronaut.jpg"


def demo_clip_path() -> Path:
    """The demo clip in the model cache, made on first use from the still shipped in the package."""
    from edgepose.models import default_cache_dir

    clip = default_cache_dir() / "demo_astronaut.mp4"
    if not clip.is_file():
        tmp = clip.with_name(f"demo_astronaut.{os.getpid()}.part.mp4")
        make_demo_clip(DEMO_STILL, tmp)
        os.replace(tmp, clip)
    return clip
