"""PoseEstimator: run a model card on images, video frames or a live stream.

Three explicit running modes, one method each (MediaPipe style):

* ``RunningMode.IMAGE``: :meth:`PoseEstimator.detect` on independent images.
* ``RunningMode.VIDEO``: :meth:`PoseEstimator.detect_for_video` on frames in order with
  increasing timestamps; the crop for frame t comes from frame t-1's pose (ROI tracking), the
  detector (or a full-frame pass) runs only when the pose is lost, and keypoints are smoothed
  by the chosen smoother (:mod:`edgepose.video.smoothing`; One Euro by default).
* ``RunningMode.LIVE_STREAM``: :meth:`PoseEstimator.detect_async` returns at once; a worker
  thread runs the video pipeline and calls ``result_callback``. When frames arrive faster than
  they are processed the oldest waiting frame is dropped and counted (``dropped_frames``).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time

import numpy as np

from edgepose.errors import EdgePoseError
from edgepose.estimator_options import EstimatorOptions, RunningMode, RunningModeChecks
from edgepose.models import PoseModel, load_model
from edgepose.models._crop import Roi
from edgepose.models.base import Estimate
from edgepose.types import Pose, PoseResult, Source
from edgepose.video.identity import DETECT_MIN_SCORE, SEARCH_RADIUS, Anchor, choose_person, jumped
from edgepose.video.smoothing import Smoother, make_smoother

log = logging.getLogger(__name__)


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


class PoseEstimator(RunningModeChecks):
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
        self._smoother, self._owns_smoother = self._make_smoother()
        #: video results waiting for a delayed smoother: [result, roi, image, smoothed yet]
        self._waiting: collections.deque = collections.deque()
        self._since_reset = 0  # poses given to the smoother since its last reset
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

    def _make_smoother(self) -> tuple[Smoother | None, bool]:
        o = self.options
        if o.running_mode == RunningMode.IMAGE or not o.smoothing or o.smoother == "none":
            return None, False
        if not isinstance(o.smoother, str):
            return o.smoother, False
        kw = {"one_euro": {"config": o.one_euro}, "learned": {"options": o.learned_smoother}}.get(o.smoother, {})
        return make_smoother(o.smoother, **kw), True

    @property
    def delay(self) -> int:
        """Frames a video result comes late: the smoother's declared delay (0 for most)."""
        return self._smoother.delay if self._smoother is not None else 0

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
        return self._result(image, est, 0, 0, timings, t0)

    def detect_for_video(self, image: np.ndarray, timestamp_ms: int) -> PoseResult | None:
        """Video mode: the next frame of one video, with increasing ``timestamp_ms``.

        Returns this frame's result; with a smoother that declares a delay of d frames
        (:attr:`delay`), frame t - d's result (its own ``frame_index`` / ``timestamp_ms``), None
        for the first d frames; :meth:`flush` returns the last d at the end of the video.
        """
        self._require_mode(RunningMode.VIDEO, "detect_for_video")
        image = check_frame(image)
        ts = self._check_ts(timestamp_ms)
        out = self._track(image, ts)
        return out[0] if out is not None else None

    def flush(self) -> list[PoseResult]:
        """Video mode, end of the video: the results a delayed smoother still holds (the last
        :attr:`delay` frames), in order; [] without a delay."""
        return [r for r, _ in self._drain()]

    def _drain(self) -> list[tuple[PoseResult, np.ndarray]]:
        self._break_smoothing()
        out = [(w[0], w[2]) for w in self._waiting]
        self._waiting.clear()
        return out

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
                out = self._track(image, ts)
                if out is not None:
                    self.options.result_callback(*out)
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

    def _track(self, image: np.ndarray, ts: int) -> tuple[PoseResult, np.ndarray] | None:
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
            self._roi = None  # the smoother is given no pose for this frame: it restarts after it
        timings["track"] = (time.perf_counter() - t1) * 1e3
        return self._finish(image, est, ts, timings, t0)

    def _track_nearest(self, image: np.ndarray, ts: int) -> tuple[PoseResult, np.ndarray] | None:
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
            self._roi = None  # the smoother is given no pose for this frame: it restarts after it
        if self._roi is not None:
            a = self._anchor
            if a is None or not a.fresh(ts) or jumped(self._roi, a, self.options.identity_gate, ts):
                self._break_smoothing()  # a different person than the last one: do not smooth across
                self._anchor = Anchor.of_roi(self._roi, ts)
            else:
                self._anchor = a.follow(self._roi, ts)
        timings["track"] = (time.perf_counter() - t1) * 1e3
        return self._finish(image, est, ts, timings, t0)

    def _finish(self, image, est, ts, timings, t0) -> tuple[PoseResult, np.ndarray] | None:
        """Smooth, then the oldest result whose smoothed pose is known (this frame's at delay 0)."""
        idx = self._frame_index
        self._frame_index += 1
        sm = self._smoother
        if sm is None:
            return self._result(image, est, ts, idx, timings, t0), image
        ok = est is not None and est.score >= self.options.min_pose_score
        t = time.perf_counter()
        out = sm.update(est.keypoints if ok else None, est.scores if ok else None, ts,
                        scale=max(est.roi.width, est.roi.height) if ok else None)
        timings["smooth"] = (time.perf_counter() - t) * 1e3
        if sm.delay == 0 and not self._waiting:
            return self._result(image, est, ts, idx, timings, t0, keypoints=out), image
        self._waiting.append([self._result(image, est, ts, idx, timings, t0), est.roi if ok else None, image, False])
        self._since_reset += 1
        if self._since_reset > sm.delay:
            self._fill(out)
        if self._waiting[0][3]:
            w = self._waiting.popleft()
            return w[0], w[2]
        return None

    def _fill(self, keypoints: np.ndarray | None) -> None:
        """The smoother's next output: the pose of the oldest waiting result not smoothed yet."""
        w = next((w for w in self._waiting if not w[3]), None)
        if w is None:  # a smoother that emitted more frames than it was given
            return
        w[3] = True
        res, roi = w[0], w[1]
        if keypoints is not None and res.poses:
            p = res.poses[0]
            res.poses[0] = Pose(keypoints, p.scores, _box(keypoints, p.scores, roi), p.score, sigma=p.sigma,
                                track_id=p.track_id)

    def _result(self, image, est: Estimate | None, ts, idx, timings, t0, keypoints=None) -> PoseResult:
        poses = []
        if est is not None and est.score >= self.options.min_pose_score:
            kps = est.keypoints if keypoints is None else keypoints
            poses.append(Pose(kps, est.scores, _box(kps, est.scores, est.roi), est.score, sigma=est.sigma,
                              track_id=0 if self.options.running_mode != RunningMode.IMAGE else None))
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return PoseResult(poses, ts, idx, (image.shape[1], image.shape[0]), Source.EDGE, timings)

    def _break_smoothing(self) -> None:
        """End the smoother's segment: waiting results get their smoothed poses, then it restarts."""
        sm = self._smoother
        if sm is None:
            return
        for kps in sm.flush():
            self._fill(kps)
        sm.reset()
        self._since_reset = 0

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
        self._break_smoothing()

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the live-stream worker (after the frames already queued) and release the model."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)
            for result, image in self._drain():  # a delayed smoother's last frames
                try:
                    self.options.result_callback(result, image)
                except Exception:
                    log.exception("live stream: callback for frame %d failed", result.frame_index)
        if self._owns_model:
            self.model.close()
        if self._detector is not None and self._owns_detector:
            self._detector.close()
        if self._smoother is not None and self._owns_smoother:
            self._smoother.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _add(acc: dict[str, float], t: dict[str, float]) -> None:
    for k, v in t.items():
        acc[k] = acc.get(k, 0.0) + v
