"""PoseEstimator: run a model card on images, video frames or a live stream.

Three explicit running modes, one method each (MediaPipe style):

* ``RunningMode.IMAGE``: :meth:`PoseEstimator.detect` on independent images.
* ``RunningMode.VIDEO``: :meth:`PoseEstimator.detect_for_video` on frames in order with
  increasing timestamps; the crop for frame t comes from frame t-1's pose (ROI tracking), the
  detector (or a full-frame pass) runs only when the pose is lost, and keypoints are smoothed
  with a One Euro filter.
* ``RunningMode.LIVE_STREAM``: :meth:`PoseEstimator.detect_async` returns at once; a worker
  thread runs the video pipeline and calls ``result_callback``. When frames arrive faster than
  they are processed the oldest waiting frame is dropped and counted (``dropped_frames``).
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgepose.errors import EdgePoseError
from edgepose.models import PoseModel, load_model
from edgepose.models._crop import Roi
from edgepose.models.base import Estimate
from edgepose.types import Pose, PoseResult, Source
from edgepose.video.identity import (DETECT_MIN_SCORE, PERSON_SELECTIONS, SEARCH_RADIUS, Anchor, choose_person,
                                     jumped)
from edgepose.video.one_euro import OneEuroConfig, OneEuroFilter
from edgepose.video.smoother import SmootherOptions

#: Valid values of :attr:`EstimatorOptions.smoother`.
SMOOTHERS = ("one_euro", "learned_gain", "learned", "none")

log = logging.getLogger(__name__)


class RunningMode(str, enum.Enum):
    IMAGE = "image"
    VIDEO = "video"
    LIVE_STREAM = "live_stream"


@dataclass
class EstimatorOptions:
    """Options of :class:`PoseEstimator`.

    Attributes:
        running_mode: which of detect / detect_for_video / detect_async may be called.
        min_pose_score: a pose whose person score is below this is reported empty and the
            tracker re-detects. 0.2 is MoveNet's tfjs keypoint threshold, applied to the mean.
        smoothing: keypoint smoothing in video / live-stream modes (off in image mode); False
            is the same as ``smoother="none"``.
        smoother: which smoother runs when ``smoothing`` is on: ``"one_euro"`` (default; a
            few microseconds per frame), ``"learned"`` (the SmoothNet-style network shipped in
            ``edgepose/data``, zero-lag; lower position error, ~0.1 ms per frame),
            ``"learned_gain"`` (One Euro whose cut-off a tiny network adapts per joint from the
            keypoint scores and motion, :mod:`edgepose.video.gain_filter`; zero-lag, ~0.04 ms per
            frame; less jitter than One Euro on the evaluation clips, docs/research-notes.md T4)
            or ``"none"``.
        one_euro: One Euro parameters (see :class:`OneEuroConfig` for why these defaults).
        learned_smoother: options of the learned smoother. Its ``delay`` must be 0 here: a
            result describes its own frame. For a steadier track with a few frames of latency,
            run :class:`edgepose.video.smoother.LearnedSmoother` with ``delay=2..4`` on the results.
        redetect_on_loss: when a tracked crop loses the person, run the detector / full-frame
            pass again on the same frame instead of waiting for the next one (one extra pass on
            rare frames, no empty frame after a fast move).
        image_refine: in image mode, run a second pass on the crop derived from the first
            (full-frame) pass; costs one more invoke, gains accuracy for small people.
        result_callback: live-stream mode: called as ``cb(result, image)`` from the worker.
        live_queue_size: live-stream mode: frames waiting at most; 1 keeps latency lowest.
        person_selection: whom the video tracker follows when several people are in view
            (video / live-stream modes). ``"model"`` (default): when there is no track the card's
            own ``initial_roi`` (a full-frame pass for MoveNet) picks whoever the model finds
            most salient. ``"nearest"``: a person detector (``person_detector``) lists everyone
            and the tracker takes the person nearest the last tracked pose (within
            ``identity_gate``), else the largest person; a tracked pose or an outside re-seed
            (:meth:`PoseEstimator.reseed`, e.g. a server answer) whose crop jumps further than
            ``identity_gate`` is treated as another person (see :mod:`edgepose.video.identity`).
            Deterministic and model-independent: two models run this way start on the same
            person. Costs one detector pass on starts, losses and jumps only.
        person_detector: the multi-person card used by ``person_selection="nearest"``: a
            registered name, or a loaded :class:`~edgepose.models.multipose.MultiPersonModel`
            (not closed by :meth:`PoseEstimator.close`).
            In image mode it is ignored (``detect`` has no track to keep).
        identity_gate: ``person_selection="nearest"``: the largest move of the crop centre
            between frames (from its position predicted at the recent velocity), in units of the
            previous crop's side, still taken as the same person. 0.35: on vtest's training frames
            (0-599) a tracked walker's centre moves 0.04 (median) to 0.26-0.29 (p99) of the crop
            side per frame at 10 fps, a crop that slid onto a crossing neighbour 0.3-0.4 and a
            re-acquisition elsewhere 1-6; 0.25 and 0.2 refused ordinary steps there.
    """

    running_mode: RunningMode = RunningMode.IMAGE
    min_pose_score: float = 0.2
    smoothing: bool = True
    smoother: str = "one_euro"
    one_euro: OneEuroConfig = field(default_factory=OneEuroConfig)
    learned_smoother: SmootherOptions = field(default_factory=lambda: SmootherOptions(delay=0))
    redetect_on_loss: bool = True
    image_refine: bool = True
    result_callback: Callable[[PoseResult, np.ndarray], None] | None = None
    live_queue_size: int = 1
    person_selection: str = "model"
    person_detector: "str | PoseModel" = "movenet-multipose"
    identity_gate: float = 0.35

    def __post_init__(self):
        try:
            self.running_mode = RunningMode(self.running_mode)
        except ValueError:
            raise ValueError(
                f"EstimatorOptions.running_mode {self.running_mode!r} is not one of "
                f"{', '.join(m.value for m in RunningMode)}") from None
        if not 0.0 <= self.min_pose_score <= 1.0:
            raise ValueError(f"EstimatorOptions.min_pose_score must be in [0, 1], got {self.min_pose_score!r}")
        if self.running_mode == RunningMode.LIVE_STREAM and self.result_callback is None:
            raise ValueError("EstimatorOptions.result_callback is required in live_stream mode; "
                             "pass result_callback=lambda result, image: ...")
        if self.running_mode != RunningMode.LIVE_STREAM and self.result_callback is not None:
            raise ValueError("EstimatorOptions.result_callback is only used in live_stream mode; "
                             f"running_mode is {self.running_mode.value!r}")
        if self.smoother not in SMOOTHERS:
            raise ValueError(f"EstimatorOptions.smoother {self.smoother!r} is not one of "
                             f"{', '.join(SMOOTHERS)}; pass smoother='one_euro' (default), 'learned_gain', 'learned' or 'none'")
        if self.smoother == "learned" and self.learned_smoother.delay != 0:
            raise ValueError(
                f"EstimatorOptions.learned_smoother.delay must be 0 inside the estimator (a result "
                f"describes its own frame), got {self.learned_smoother.delay}; for a delayed, steadier "
                "track run edgepose.video.smoother.LearnedSmoother(SmootherOptions(delay=N)) on the results")
        if not isinstance(self.live_queue_size, int) or self.live_queue_size < 1:
            raise ValueError(f"EstimatorOptions.live_queue_size must be an int >= 1, got {self.live_queue_size!r}")
        if self.person_selection not in PERSON_SELECTIONS:
            raise ValueError(f"EstimatorOptions.person_selection {self.person_selection!r} is not one of "
                             f"{', '.join(PERSON_SELECTIONS)}; pass 'model' (default: the model's own full-frame "
                             "pick) or 'nearest' (a person detector; the person nearest the track, else the largest)")
        if not isinstance(self.identity_gate, (int, float)) or not self.identity_gate > 0:
            raise ValueError(f"EstimatorOptions.identity_gate must be a number > 0 (crop sides), "
                             f"got {self.identity_gate!r}")


def check_frame(image) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = (f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}").strip()
        raise EdgePoseError(
            f"image must be an (H, W, 3) uint8 RGB numpy array, got {desc}; convert BGR from OpenCV "
            "with cv2.cvtColor(img, cv2.COLOR_BGR2RGB)")
    return image


def _box(kps: np.ndarray, scores: np.ndarray, roi: Roi, min_score: float = 0.2):
    # Plain Python over 17 points (faster than numpy at this size; runs every frame).
    pts = [p for p, s in zip(kps.tolist(), scores.tolist()) if s > min_score]
    if len(pts) >= 2:
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        return min(xs), min(ys), max(xs), max(ys)
    return roi.box()


class PoseEstimator:
    """Runs a model card in one running mode.

    Example:
        >>> est = PoseEstimator("movenet-lightning-int8",
        ...                     options=EstimatorOptions(running_mode="video"))  # doctest: +SKIP
        >>> for frame in VideoFileSource("clip.mp4"):                            # doctest: +SKIP
        ...     result = est.detect_for_video(frame.image, frame.timestamp_ms)

    Args:
        model: a loaded :class:`PoseModel`, a registered model name, or a model file path; default:
            the model shipped in the package (``edgepose.models.DEFAULT_MODEL``).
        options: :class:`EstimatorOptions` (default: image mode).
        num_threads: intra-op threads when ``model`` is a name or path.
    """

    def __init__(self, model: PoseModel | str | None = None, *, options: EstimatorOptions | None = None,
                 num_threads: int | None = None):
        self.options = options or EstimatorOptions()
        if model is None:  # the card shipped inside the package
            from edgepose.models import DEFAULT_MODEL as model
        self._owns_model = not isinstance(model, PoseModel)
        self.model = load_model(model, num_threads=num_threads) if self._owns_model else model
        self._filter = OneEuroFilter(self.options.one_euro)
        self._learned = None
        if self.options.smoothing and self.options.smoother == "learned" \
                and self.options.running_mode != RunningMode.IMAGE:
            from edgepose.video.smoother import LearnedSmoother

            self._learned = LearnedSmoother(self.options.learned_smoother)
        self._gain = None
        if self.options.smoothing and self.options.smoother == "learned_gain" \
                and self.options.running_mode != RunningMode.IMAGE:
            from edgepose.video.gain_filter import LearnedGainFilter

            self._gain = LearnedGainFilter()
        self._roi: Roi | None = None
        #: person_selection="nearest": the person detector and where the followed person was last seen
        self._detector = None
        self._anchor: Anchor | None = None
        self.identity_rejects = 0
        if self.options.person_selection == "nearest" and self.options.running_mode != RunningMode.IMAGE:
            self._detector = self._load_detector(num_threads)
        self._last_ts: int | None = None
        self._frame_index = 0
        self.dropped_frames = 0
        self._worker: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._closed = False
        if self.options.running_mode == RunningMode.LIVE_STREAM:
            self._queue = queue.Queue(maxsize=self.options.live_queue_size)
            self._worker = threading.Thread(target=self._live_loop, name="edgepose-live", daemon=True)
            self._worker.start()

    def _load_detector(self, num_threads):
        from edgepose.models.multipose import MultiPersonModel

        given = self.options.person_detector
        self._owns_detector = not isinstance(given, PoseModel)
        det = load_model(given, num_threads=num_threads) if self._owns_detector else given
        if not isinstance(det, MultiPersonModel):
            if self._owns_detector:
                det.close()
            if self._owns_model:
                self.model.close()
            raise EdgePoseError(
                f"EstimatorOptions.person_detector {getattr(det, 'name', given)!r} finds one person; "
                "person_selection='nearest' needs a multi-person card such as 'movenet-multipose'")
        return det

    # -- modes ---------------------------------------------------------------------------------
    def _require_mode(self, mode: RunningMode, method: str) -> None:
        if self.options.running_mode != mode:
            raise EdgePoseError(
                f"{method}() needs running_mode={mode.value!r}, but this estimator was created with "
                f"running_mode={self.options.running_mode.value!r}; create it with "
                f"EstimatorOptions(running_mode={mode.value!r})")

    def _check_ts(self, timestamp_ms) -> int:
        ts = int(timestamp_ms)
        if self._last_ts is not None and ts <= self._last_ts:
            raise EdgePoseError(
                f"timestamp_ms must increase monotonically: got {ts} after {self._last_ts}")
        self._last_ts = ts
        return ts

    def detect(self, image: np.ndarray) -> PoseResult:
        """Image mode: estimate the pose in one independent image."""
        self._require_mode(RunningMode.IMAGE, "detect")
        image = check_frame(image)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        est = self._fresh(image, timings)
        if est is not None and self.options.image_refine and not self.model.has_detector:
            roi = self.model.next_roi(est, (image.shape[1], image.shape[0]))
            if roi is not None:
                est2 = self.model.estimate(image, roi)
                _add(timings, est2.timings_ms)
                if est2.score >= est.score:
                    est = est2
        return self._result(image, est, 0, 0, timings, t0, smooth=False)

    def detect_for_video(self, image: np.ndarray, timestamp_ms: int) -> PoseResult:
        """Video mode: the next frame of one video, with increasing ``timestamp_ms``."""
        self._require_mode(RunningMode.VIDEO, "detect_for_video")
        image = check_frame(image)
        ts = self._check_ts(timestamp_ms)
        return self._track(image, ts)

    def detect_async(self, image: np.ndarray, timestamp_ms: int) -> None:
        """Live-stream mode: queue a frame; the result arrives through ``result_callback``."""
        self._require_mode(RunningMode.LIVE_STREAM, "detect_async")
        if self._closed:
            raise EdgePoseError("estimator is closed; create a new one")
        image = check_frame(image)
        ts = self._check_ts(timestamp_ms)
        item = (image, ts)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped_frames += 1
                    log.debug("live stream: dropped a waiting frame (total %d)", self.dropped_frames)
                except queue.Empty:
                    pass

    def _live_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            image, ts = item
            try:
                result = self._track(image, ts)
                self.options.result_callback(result, image)
            except Exception:  # the worker must survive a bad frame or callback
                log.exception("live stream: frame at %d ms failed", ts)

    # -- pipeline --------------------------------------------------------------------------------
    def _fresh(self, image, timings) -> Estimate | None:
        roi, t = self.model.initial_roi(image)
        _add(timings, t)
        if roi is None:
            return None
        est = self.model.estimate(image, roi)
        _add(timings, est.timings_ms)
        return est

    def _select(self, image, timings, ts: int) -> Estimate | None:
        """person_selection="nearest": the detector's person nearest the anchor, else the largest."""
        det = self._detector
        if hasattr(det, "run_roi"):  # MoveNet MultiPose: small people score low; keep those above DETECT_MIN_SCORE
            from edgepose.models.multipose import to_estimates

            dec, t = det.run_roi(image, Roi.full_frame(image.shape[1], image.shape[0]), min_score=DETECT_MIN_SCORE)
            people = to_estimates(dec)
        else:
            people, t = det.detect_people(image)
        _add(timings, {"detect": sum(t.values())})
        i = choose_person([p.roi.box() for p in people], self._anchor, SEARCH_RADIUS, ts)
        if i is None:
            return None
        chosen = people[i]
        roi = Roi.from_box(*chosen.roi.box())
        est = self.model.estimate(image, roi)
        _add(timings, est.timings_ms)
        nxt = self.model.next_roi(est, (image.shape[1], image.shape[0]))
        if nxt is not None and Anchor.of_roi(roi, ts).distance(nxt.cx, nxt.cy) > self.options.identity_gate:
            # the single-person model found a neighbour in the chosen person's crop: keep the
            # detector's own pose of the chosen person (its crop then follows that person)
            self.identity_rejects += 1
            est = Estimate(chosen.keypoints, chosen.scores, roi, float(np.mean(chosen.scores)),
                           timings_ms=est.timings_ms)
        return est

    def _track(self, image: np.ndarray, ts: int) -> PoseResult:
        if self._detector is not None:
            return self._track_nearest(image, ts)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        est = None
        if self._roi is not None:
            est = self.model.estimate(image, self._roi)
            _add(timings, est.timings_ms)
            if est.score < self.options.min_pose_score:
                est = self._fresh(image, timings) if self.options.redetect_on_loss else None
        else:
            est = self._fresh(image, timings)
        t1 = time.perf_counter()
        if est is not None and est.score >= self.options.min_pose_score:
            self._roi = self.model.next_roi(est, (image.shape[1], image.shape[0]))
        else:
            self._roi = None
            self._reset_smoothers()
        timings["track"] = (time.perf_counter() - t1) * 1e3
        return self._finish(image, est, ts, timings, t0)

    def _track_nearest(self, image: np.ndarray, ts: int) -> PoseResult:
        """The video pipeline with person_selection="nearest" (detector choice + identity guard)."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        size = (image.shape[1], image.shape[0])
        min_score = self.options.min_pose_score
        est, nxt = None, None
        if self._roi is not None:
            est = self.model.estimate(image, self._roi)
            _add(timings, est.timings_ms)
            if est.score < min_score:
                est = self._select(image, timings, ts) if self.options.redetect_on_loss else None
            else:
                nxt = self.model.next_roi(est, size)
                if jumped(nxt, self._anchor, self.options.identity_gate, ts):
                    # the crop slid onto someone else: let the detector choose (nearest the anchor)
                    self.identity_rejects += 1
                    est, nxt = self._select(image, timings, ts), None
        else:
            est = self._select(image, timings, ts)
        t1 = time.perf_counter()
        if est is not None and est.score >= min_score:
            self._roi = nxt if nxt is not None else self.model.next_roi(est, size)
        else:
            self._roi = None
            self._reset_smoothers()
        if self._roi is not None:
            a = self._anchor
            if a is None or not a.fresh(ts) or jumped(self._roi, a, self.options.identity_gate, ts):
                self._reset_smoothers()  # a different person than the last one: do not smooth across
                self._anchor = Anchor.of_roi(self._roi, ts)
            else:
                self._anchor = a.follow(self._roi, ts)
        timings["track"] = (time.perf_counter() - t1) * 1e3
        return self._finish(image, est, ts, timings, t0)

    def _finish(self, image, est, ts, timings, t0) -> PoseResult:
        idx = self._frame_index
        self._frame_index += 1
        smooth = self.options.smoothing and self.options.smoother != "none"
        return self._result(image, est, ts, idx, timings, t0, smooth=smooth)

    def _result(self, image, est: Estimate | None, ts, idx, timings, t0, *, smooth) -> PoseResult:
        poses = []
        if est is not None and est.score >= self.options.min_pose_score:
            kps = est.keypoints
            if smooth:
                t = time.perf_counter()
                if self._learned is not None:
                    kps = self._learned.push(kps, ts, scores=est.scores)[0].keypoints
                elif self._gain is not None:
                    roi = est.roi
                    kps = self._gain(kps, ts, scale=max(roi.width, roi.height),
                                     scores=est.scores).astype(np.float32)
                else:
                    roi = est.roi
                    kps = self._filter(kps, ts, scale=max(roi.width, roi.height)).astype(np.float32)
                timings["smooth"] = (time.perf_counter() - t) * 1e3
            poses.append(Pose(kps, est.scores, _box(kps, est.scores, est.roi), est.score, sigma=est.sigma,
                              track_id=0 if self.options.running_mode != RunningMode.IMAGE else None))
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return PoseResult(poses, ts, idx, (image.shape[1], image.shape[0]), Source.EDGE, timings)

    def _reset_smoothers(self) -> None:
        self._filter.reset()
        if self._gain is not None:
            self._gain.reset()
        if self._learned is not None:
            self._learned.reset()

    @property
    def roi(self) -> Roi | None:
        """The crop the next video frame will use (None: the detector / a full-frame pass runs)."""
        return self._roi

    def is_other_person(self, keypoints: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> bool:
        """Whether an outside pose is of someone else than the followed person.

        Only with ``person_selection="nearest"`` (else always False): True when the pose's crop
        centre lies more than ``identity_gate`` x the last crop's side from where the followed
        person was last seen (at most :data:`~edgepose.video.identity.ANCHOR_MAX_AGE_MS` ago).
        """
        if self._detector is None or self._anchor is None:
            return False
        if self._last_ts is not None and not self._anchor.fresh(self._last_ts):
            return False
        kps = np.asarray(keypoints, np.float32).reshape(17, 2)
        sc = np.asarray(scores, np.float32).reshape(17)
        w, h = image_size
        roi = self.model.next_roi(Estimate(kps, sc, Roi.full_frame(w, h), float(sc.mean())), (w, h))
        return jumped(roi, self._anchor, self.options.identity_gate, self._last_ts)

    def reseed(self, keypoints: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> bool:
        """Re-seed the tracker from an external pose (e.g. a server's answer for a recent frame).

        With ``person_selection="nearest"`` a pose of another person (:meth:`is_other_person`) is
        refused: the tracker keeps its crop and ``identity_rejects`` counts it.

        Args:
            keypoints: (17, 2) COCO-17 frame px.
            scores: (17,) keypoint scores.
            image_size: (width, height) of the frame.

        Returns:
            True when the pose gave a crop to track, False when it was too weak (tracker reset)
            or, with ``person_selection="nearest"``, of another person (tracker unchanged).
        """
        if self._detector is not None and self.is_other_person(keypoints, scores, image_size):
            self.identity_rejects += 1
            return False
        kps = np.asarray(keypoints, np.float32).reshape(17, 2)
        sc = np.asarray(scores, np.float32).reshape(17)
        w, h = image_size
        est = Estimate(kps, sc, Roi.full_frame(w, h), float(sc.mean()))
        self._roi = self.model.next_roi(est, (w, h)) if est.score >= self.options.min_pose_score else None
        if self._detector is not None and self._roi is not None:
            ts = self._last_ts if self._last_ts is not None else 0
            a = self._anchor
            self._anchor = Anchor.of_roi(self._roi, ts) if a is None or ts <= a.ts else a.follow(self._roi, ts)
        return self._roi is not None

    def reset(self) -> None:
        """Forget the tracked pose (e.g. on a scene cut)."""
        self._roi = None
        self._anchor = None
        self._reset_smoothers()

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the live-stream worker (after the frames already queued) and release the model."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)
        if self._owns_model:
            self.model.close()
        if self._detector is not None and self._owns_detector:
            self._detector.close()
        if self._learned is not None:
            self._learned.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _add(acc: dict[str, float], t: dict[str, float]) -> None:
    for k, v in t.items():
        acc[k] = acc.get(k, 0.0) + v
