"""Typed pose results, the canonical COCO-17 keypoints, skeleton edges and format maps.

Canonical format: COCO-17, pixel coordinates in the original frame, one score per keypoint.
Other formats map to it through the explicit tables in :data:`FORMAT_TO_COCO17`:
``table[i]`` is the index, in that format, of COCO-17 keypoint ``i`` (``-1`` = not present).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Keypoint(enum.IntEnum):
    """COCO-17 keypoints, in the canonical order."""

    NOSE = 0
    LEFT_EYE = 1
    RIGHT_EYE = 2
    LEFT_EAR = 3
    RIGHT_EAR = 4
    LEFT_SHOULDER = 5
    RIGHT_SHOULDER = 6
    LEFT_ELBOW = 7
    RIGHT_ELBOW = 8
    LEFT_WRIST = 9
    RIGHT_WRIST = 10
    LEFT_HIP = 11
    RIGHT_HIP = 12
    LEFT_KNEE = 13
    RIGHT_KNEE = 14
    LEFT_ANKLE = 15
    RIGHT_ANKLE = 16


NUM_KEYPOINTS = len(Keypoint)
KEYPOINT_NAMES: tuple[str, ...] = tuple(k.name.lower() for k in Keypoint)

#: Skeleton edges (pairs of COCO-17 indices) for drawing and limb metrics.
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)

#: Left/right swap permutation of COCO-17 (for horizontal flips).
FLIP_PERMUTATION: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

#: The 13 joints every evaluation format shares (nose, shoulders, elbows, wrists, hips, knees, ankles).
SHARED13: tuple[int, ...] = (0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)

#: COCO-17 sigmas used by OKS.
COCO_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87,
     0.89, 0.89], dtype=np.float64) / 10.0

_ = -1
#: For each format, the index in that format of each COCO-17 keypoint (-1: absent).
FORMAT_TO_COCO17: dict[str, tuple[int, ...]] = {
    "coco17": tuple(range(17)),
    # BlazePose GHUM 33 landmarks.
    "blazepose33": (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28),
    # CrowdPose-14 (also ExLPose): l_sho r_sho l_elb r_elb l_wri r_wri l_hip r_hip l_kne r_kne l_ank r_ank head neck.
    "crowdpose14": (_, _, _, _, _, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11),
    # AIC-14: r_sho r_elb r_wri l_sho l_elb l_wri r_hip r_kne r_ank l_hip l_kne l_ank head neck.
    "aic14": (_, _, _, _, _, 3, 0, 4, 1, 5, 2, 9, 6, 10, 7, 11, 8),
    # MPII-16 (also MHP): r_ank r_kne r_hip l_hip l_kne l_ank pelvis thorax neck head r_wri r_elb r_sho l_sho l_elb l_wri.
    "mpii16": (_, _, _, _, _, 13, 12, 14, 11, 15, 10, 3, 2, 4, 1, 5, 0),
    # JHMDB-15: neck belly head r_sho l_sho r_hip l_hip r_elb l_elb r_kne l_kne r_wri l_wri r_ank l_ank.
    "jhmdb15": (_, _, _, _, _, 4, 3, 8, 7, 12, 11, 6, 5, 10, 9, 14, 13),
    # H36M-17 (standard order: 1-3 are the RIGHT leg, 4-6 the left).
    "h36m17": (_, _, _, _, _, 11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3),
}
del _


def to_coco17(points: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Map ``points`` (N_fmt, D) of format ``fmt`` to COCO-17.

    Returns:
        ``(coco, present)``: coco is (17, D) with zeros where absent, present is (17,) bool.
    """
    if fmt not in FORMAT_TO_COCO17:
        from edgepose.errors import unknown_name

        raise unknown_name("keypoint format", fmt, FORMAT_TO_COCO17)
    table = np.asarray(FORMAT_TO_COCO17[fmt])
    points = np.asarray(points)
    present = table >= 0
    out = np.zeros((NUM_KEYPOINTS,) + points.shape[1:], dtype=points.dtype)
    out[present] = points[table[present]]
    return out, present


class Source(str, enum.Enum):
    """Where a frame's pose came from."""

    EDGE = "edge"  #: the on-device model ran on this frame
    CLOUD = "cloud"  #: an offload server's answer replaced the local pose
    PROPAGATED = "propagated"  #: carried from an earlier frame (keyframe interval > 1)
    RECOVERED = "recovered"  #: reconstructed by a temporal model between keyframes


@dataclass
class Pose:
    """One person's pose in frame pixels.

    Attributes:
        keypoints: (17, 2) float32 x, y in frame pixels (COCO-17 order).
        scores: (17,) float32 per-keypoint confidence in [0, 1].
        box: (x0, y0, x1, y1) in frame pixels, the extent of the confident keypoints or the
            detector box.
        score: person confidence (mean of keypoint scores unless the model gives one).
        sigma: optional (17,) per-keypoint uncertainty in pixels (RLE models).
        track_id: stable id across frames in video mode (None in image mode).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    box: tuple[float, float, float, float]
    score: float
    sigma: np.ndarray | None = None
    track_id: int | None = None

    def __getitem__(self, kp: Keypoint | int) -> tuple[float, float, float]:
        """``pose[Keypoint.NOSE]`` -> (x, y, score)."""
        i = int(kp)
        return float(self.keypoints[i, 0]), float(self.keypoints[i, 1]), float(self.scores[i])

    def to_dict(self) -> dict[str, Any]:
        d = {
            "keypoints": np.round(self.keypoints, 2).tolist(),
            "scores": np.round(self.scores, 4).tolist(),
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
        }
        if self.sigma is not None:
            d["sigma"] = np.round(self.sigma, 3).tolist()
        if self.track_id is not None:
            d["track_id"] = int(self.track_id)
        return d


@dataclass
class PoseResult:
    """The result for one image or video frame.

    Attributes:
        poses: detected people (empty when nobody was found).
        timestamp_ms: the frame's timestamp, the one time axis of tracker, smoother and budget.
        frame_index: 0-based index of the frame in its stream (0 in image mode).
        image_size: (width, height) of the frame.
        source: where the pose came from (:class:`Source`).
        timings_ms: per-stage wall time in ms (e.g. ``preprocess``, ``infer``, ``decode``,
            ``track``, ``smooth``, ``detect``, ``total``).
        deadline_met: whether the frame met its latency budget (None when no budget is set).
    """

    poses: list[Pose]
    timestamp_ms: int
    frame_index: int
    image_size: tuple[int, int]
    source: Source = Source.EDGE
    timings_ms: dict[str, float] = field(default_factory=dict)
    deadline_met: bool | None = None

    @property
    def pose(self) -> Pose | None:
        """The first (highest-scoring) pose, or None."""
        return self.poses[0] if self.poses else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame_index": self.frame_index,
            "timestamp_ms": self.timestamp_ms,
            "image_size": list(self.image_size),
            "source": self.source.value,
            "deadline_met": self.deadline_met,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "poses": [p.to_dict() for p in self.poses],
        }
