"""The model-card interface: preprocess -> infer -> decode, and ROI tracking hooks.

A model card wraps one (or two, for detector + landmark) backends. It turns a frame and a
region of interest into COCO-17 keypoints in frame pixels. Decoders are pure numpy functions
in each card's module, tested without a backend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgepose.backends.base import Backend
from edgepose.models._crop import Roi


@dataclass
class Estimate:
    """One model pass on one ROI.

    Attributes:
        keypoints: (17, 2) float32 COCO-17 x, y in frame pixels.
        scores: (17,) float32 per-keypoint confidence.
        roi: the ROI the model ran on.
        score: person/presence confidence (mean keypoint score unless the model has one).
        sigma: optional (17,) per-keypoint uncertainty in frame pixels (RLE heads).
        native: optional (N, C) landmarks in the model's own format, frame pixels (e.g. the
            33 + 6 BlazePose landmarks, used to compute the next ROI).
        timings_ms: per-stage wall times (preprocess, infer, decode; detect when run).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    roi: Roi
    score: float
    sigma: np.ndarray | None = None
    native: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class PoseModel:
    """Base class of model cards.

    Subclasses set ``name``, ``keypoint_format``, ``input_size`` (w, h) and implement
    :meth:`estimate`. Video tracking uses :meth:`initial_roi` (a detector or a full-frame pass
    when there is no pose to follow) and :meth:`next_roi` (the crop for frame t+1 from frame t's
    pose).
    """

    name = "base"
    keypoint_format = "coco17"
    input_size: tuple[int, int] = (0, 0)
    #: True when initial_roi runs a separate person detector.
    has_detector = False

    def __init__(self, backend: Backend):
        self.backend = backend

    # -- the three stages ------------------------------------------------------------------
    def estimate(self, frame: np.ndarray, roi: Roi) -> Estimate:
        """Run the model on ``roi`` of ``frame`` (H, W, 3 uint8 RGB)."""
        raise NotImplementedError

    def initial_roi(self, frame: np.ndarray) -> tuple[Roi | None, dict[str, float]]:
        """Where to look when there is no pose to follow: the full frame by default.

        Returns:
            ``(roi, timings_ms)``; roi None when a detector finds nobody.
        """
        h, w = frame.shape[:2]
        return Roi.full_frame(w, h), {}

    def next_roi(self, est: Estimate, image_size: tuple[int, int]) -> Roi | None:
        """The ROI for the next frame from this frame's estimate; None when the pose is lost."""
        from edgepose.models.roi import roi_from_keypoints

        return roi_from_keypoints(est.keypoints, est.scores, image_size)

    # -- lifecycle -----------------------------------------------------------------------------
    def backends(self) -> list[Backend]:
        return [self.backend]

    def close(self) -> None:
        for b in self.backends():
            b.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StageTimer:
    """Accumulates per-stage wall times in ms: ``with t("infer"): ...``."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    def __call__(self, stage: str):
        return _Stage(self, stage)


class _Stage:
    def __init__(self, timer: StageTimer, stage: str):
        self.timer, self.stage = timer, stage

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        dt = (time.perf_counter() - self.t0) * 1e3
        self.timer.ms[self.stage] = self.timer.ms.get(self.stage, 0.0) + dt
