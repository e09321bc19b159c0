"""MultiPoseEstimator: several people per frame, with stable track ids in video.

Same running modes as :class:`~edgepose.estimator.PoseEstimator` (one method each):

* image: :meth:`MultiPoseEstimator.detect` -> every person, ``track_id`` None.
* video: :meth:`MultiPoseEstimator.detect_for_video` -> people with stable ``track_id`` from
  :class:`~edgepose.video.multitrack.MultiPersonTracker`, each smoothed by its own One Euro filter.
  With a top-down card and ``detect_interval_ms > 0`` the detector runs at most that often;
  between, each tracked person is followed from its previous keypoints (no detector pass).
* live stream: :meth:`MultiPoseEstimator.detect_async` returns at once; a worker runs the video
  pipeline and calls ``result_callback``; waiting frames beyond ``live_queue_size`` are dropped
  (oldest first) and counted in ``dropped_frames``.

Example:
    >>> est = MultiPoseEstimator("movenet-multipose",
    ...                          options=MultiPoseOptions(running_mode="video"))  # doctest: +SKIP
    >>> for frame in open_source("clip.mp4"):                                    # doctest: +SKIP
    ...     for pose in est.detect_for_video(frame.image, frame.timestamp_ms).poses:
    ...         print(pose.track_id, pose.box)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgepose.errors import ConfigError, EdgePoseError
from edgepose.estimator import RunningMode, check_frame
from edgepose.estimator_options import RunningModeChecks
from edgepose.models import load_model
from edgepose.models.base import Estimate, PoseModel
from edgepose.models.multipose import MultiPersonModel
from edgepose.types import Pose, PoseResult, Source
from edgepose.video.capture import DropOldestQueue, QueueClosed
from edgepose.video.multitrack import MultiPersonTracker, TrackerOptions
from edgepose.video.one_euro import OneEuroConfig, OneEuroFilter

log = logging.getLogger(__name__)


@dataclass
class MultiPoseOptions:
    """Options of :class:`MultiPoseEstimator`.

    Attributes:
        running_mode: which of detect / detect_for_video / detect_async may be called.
        max_people: report at most this many people, best first (MoveNet MultiPose has 6 slots;
            the same bound keeps a top-down card's per-frame cost predictable).
        tracker: matching, births and deaths (:class:`TrackerOptions`; tfjs defaults).
        smoothing: One Euro smoothing per track in video / live-stream modes.
        one_euro: filter parameters (see :class:`OneEuroConfig`).
        detect_interval_ms: top-down cards in video mode: run the person detector when this much
            time passed since the last detection, or when nobody is tracked; between, follow the
            tracked people. 0 runs the detector on every frame (new people appear at once).
        result_callback: live-stream mode: called as ``cb(result, image)`` from the worker.
        live_queue_size: live-stream mode: frames waiting at most; 1 keeps latency lowest.
    """

    running_mode: RunningMode = RunningMode.IMAGE
    max_people: int = 6
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    smoothing: bool = True
    one_euro: OneEuroConfig = field(default_factory=OneEuroConfig)
    detect_interval_ms: int = 0
    result_callback: Callable[[PoseResult, np.ndarray], None] | None = None
    live_queue_size: int = 1

    def __post_init__(self):
        try:
            self.running_mode = RunningMode(self.running_mode)
        except ValueError:
            raise ConfigError(f"MultiPoseOptions.running_mode {self.running_mode!r} is not one of "
                             f"{', '.join(m.value for m in RunningMode)}") from None
        if not isinstance(self.max_people, int) or self.max_people < 1:
            raise ConfigError(f"MultiPoseOptions.max_people must be an int >= 1, got {self.max_people!r}")
        if not isinstance(self.detect_interval_ms, int) or self.detect_interval_ms < 0:
            raise ConfigError("MultiPoseOptions.detect_interval_ms must be an int >= 0, got "
                             f"{self.detect_interval_ms!r}")
        live = self.running_mode == RunningMode.LIVE_STREAM
        if live and self.result_callback is None:
            raise ConfigError("MultiPoseOptions.result_callback is required in live_stream mode; "
                             "pass result_callback=lambda result, image: ...")
        if not live and self.result_callback is not None:
            raise ConfigError("MultiPoseOptions.result_callback is only used in live_stream mode; "
                             f"running_mode is {self.running_mode.value!r}")
        if not isinstance(self.live_queue_size, int) or self.live_queue_size < 1:
            raise ConfigError(f"MultiPoseOptions.live_queue_size must be an int >= 1, got {self.live_queue_size!r}")


class MultiPoseEstimator(RunningModeChecks):
    """Runs a multi-person card (``movenet-multipose``, ``topdown-*``) in one running mode.

    Args:
        model: a loaded :class:`MultiPersonModel` or a registered multi-person card name (a
            model given loaded is not closed by :meth:`close`).
        options: :class:`MultiPoseOptions` (default: image mode).
        num_threads: intra-op threads when ``model`` is a name or path.
    """

    _OPTIONS = "MultiPoseOptions"  # named in the running-mode error

    def __init__(self, model: MultiPersonModel | str, *, options: MultiPoseOptions | None = None,
                 num_threads: int | None = None):
        self.options = options or MultiPoseOptions()
        self._owns_model = not isinstance(model, PoseModel)
        self.model = load_model(model, num_threads=num_threads) if self._owns_model else model
        if not isinstance(self.model, MultiPersonModel):
            name = getattr(self.model, "name", model)
            if self._owns_model:
                self.model.close()
            raise EdgePoseError(
                f"model {name!r} finds one person; MultiPoseEstimator needs a multi-person card: "
                "movenet-multipose, topdown-thunder or topdown-lightning (or use PoseEstimator)")
        self.tracker = MultiPersonTracker(self.options.tracker)
        self._filters: dict[int, OneEuroFilter] = {}
        self._last_ts: int | None = None
        self._last_detect_ts: int | None = None
        self._frame_index = 0
        self._closed = False
        self._queue: DropOldestQueue | None = None
        self._worker: threading.Thread | None = None
        if self.options.running_mode == RunningMode.LIVE_STREAM:
            self._queue = DropOldestQueue(self.options.live_queue_size)
            self._worker = threading.Thread(target=self._live_loop, name="edgepose-multi-live", daemon=True)
            self._worker.start()

    @property
    def dropped_frames(self) -> int:
        """Live-stream mode: frames dropped because the worker was busy."""
        return self._queue.dropped if self._queue is not None else 0

    # -- modes -------------------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> PoseResult:
        """Image mode: every person in one independent image (``track_id`` None)."""
        self._require_mode(RunningMode.IMAGE, "detect")
        image = check_frame(image)
        t0 = time.perf_counter()
        ests, timings = self.model.detect_people(image)
        poses = [self._pose(e, None) for e in ests[: self.options.max_people]]
        return self._result(image, poses, 0, 0, timings, t0)

    def detect_for_video(self, image: np.ndarray, timestamp_ms: int) -> PoseResult:
        """Video mode: the next frame of one video, with increasing ``timestamp_ms``."""
        self._require_mode(RunningMode.VIDEO, "detect_for_video")
        image = check_frame(image)
        return self._track(image, self._check_ts(timestamp_ms))

    def detect_async(self, image: np.ndarray, timestamp_ms: int) -> None:
        """Live-stream mode: queue a frame; the result arrives through ``result_callback``."""
        self._require_mode(RunningMode.LIVE_STREAM, "detect_async")
        if self._closed:
            raise EdgePoseError("estimator is closed; create a new one")
        image = check_frame(image)
        self._queue.put((image, self._check_ts(timestamp_ms)))

    def _live_loop(self) -> None:
        while True:
            try:
                image, ts = self._queue.get()
            except QueueClosed:
                return
            try:
                self.options.result_callback(self._track(image, ts), image)
            except Exception:  # the worker must survive a bad frame or callback
                log.exception("live stream: frame at %d ms failed", ts)

    # -- pipeline ----------------------------------------------------------------------------------
    def _people(self, image: np.ndarray, ts: int) -> tuple[list[Estimate], dict[str, float]]:
        opts, model = self.options, self.model
        follow = (model.supports_rois and opts.detect_interval_ms > 0 and self._last_detect_ts is not None
                  and ts - self._last_detect_ts < opts.detect_interval_ms)
        if follow:
            size = (image.shape[1], image.shape[0])
            rois = []
            for tr in self.tracker.live():
                roi = model.next_roi(Estimate(tr.keypoints, tr.scores, None, 1.0), size)
                if roi is not None:
                    rois.append(roi)
            if rois:
                ests, timings = model.estimate_rois(image, rois)
                if ests:
                    return ests, timings
        self._last_detect_ts = ts
        return model.detect_people(image)

    def _track(self, image: np.ndarray, ts: int) -> PoseResult:
        t0 = time.perf_counter()
        ests, timings = self._people(image, ts)
        ests = sorted(ests, key=lambda e: -e.score)[: self.options.max_people]
        t1 = time.perf_counter()
        boxes = [self._box(e) for e in ests]
        ids = self.tracker.update([e.keypoints for e in ests], [e.scores for e in ests], boxes, ts)
        live = {t.track_id for t in self.tracker.tracks}
        for tid in [k for k in self._filters if k not in live]:
            del self._filters[tid]
        timings["track"] = (time.perf_counter() - t1) * 1e3
        poses = []
        t2 = time.perf_counter()
        for e, tid, box in zip(ests, ids, boxes):
            kps = e.keypoints
            if self.options.smoothing:
                f = self._filters.setdefault(tid, OneEuroFilter(self.options.one_euro))
                kps = f(kps, ts, scale=max(box[2] - box[0], box[3] - box[1], 1.0)).astype(np.float32)
            poses.append(Pose(kps, e.scores, box, e.score, sigma=e.sigma, track_id=tid))
        if self.options.smoothing:
            timings["smooth"] = (time.perf_counter() - t2) * 1e3
        idx = self._frame_index
        self._frame_index += 1
        return self._result(image, poses, ts, idx, timings, t0)

    def _box(self, e: Estimate) -> tuple[float, float, float, float]:
        if getattr(self.model, "roi_is_box", False):
            return tuple(float(v) for v in e.roi.box())
        ok = e.scores > 0.2
        pts = e.keypoints[ok] if ok.sum() >= 2 else e.keypoints
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def _pose(self, e: Estimate, tid: int | None) -> Pose:
        return Pose(e.keypoints, e.scores, self._box(e), e.score, sigma=e.sigma, track_id=tid)

    def _result(self, image, poses, ts, idx, timings, t0) -> PoseResult:
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return PoseResult(poses, ts, idx, (image.shape[1], image.shape[0]), Source.EDGE, timings)

    def reset(self) -> None:
        """Forget every track (e.g. on a scene cut); ids keep increasing."""
        self.tracker.reset()
        self._filters.clear()
        self._last_detect_ts = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the live-stream worker (after the frames already queued) and release the model."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._queue.close()
            self._worker.join(timeout=30)
        if self._owns_model:
            self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["MultiPoseEstimator", "MultiPoseOptions"]
