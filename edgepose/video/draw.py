"""Overlay drawing of poses on frames (for `edgepose run` and the examples)."""

from __future__ import annotations

import numpy as np

from edgepose._optional import require
from edgepose.types import SKELETON, PoseResult

_SOURCE_COLOURS = {"edge": (0, 200, 255), "cloud": (255, 120, 0), "propagated": (160, 160, 160),
                   "recovered": (0, 255, 120)}


def draw_result(image_rgb: np.ndarray, result: PoseResult, *, min_score: float = 0.3) -> np.ndarray:
    """Return a copy of ``image_rgb`` with skeletons of ``result`` drawn (colour by source)."""
    cv2 = require("cv2", "base", package="opencv-python-headless")
    out = image_rgb.copy()
    colour = _SOURCE_COLOURS.get(result.source.value, (255, 255, 255))
    thick = max(1, int(round(max(out.shape[:2]) / 320)))
    for pose in result.poses:
        k, s = pose.keypoints, pose.scores
        for a, b in SKELETON:
            if s[a] >= min_score and s[b] >= min_score:
                cv2.line(out, (int(k[a, 0]), int(k[a, 1])), (int(k[b, 0]), int(k[b, 1])), colour, thick,
                         cv2.LINE_AA)
        for i in range(len(k)):
            if s[i] >= min_score:
                cv2.circle(out, (int(k[i, 0]), int(k[i, 1])), thick + 2, (255, 255, 255), -1, cv2.LINE_AA)
    return out
