"""Options of :class:`~edgepose.estimator.PoseEstimator`: its running mode, smoother and tracker."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgepose.models import PoseModel
from edgepose.types import PoseResult
from edgepose.video.identity import PERSON_SELECTIONS
from edgepose.video.one_euro import OneEuroConfig
from edgepose.video.smoother import SmootherOptions
from edgepose.video.smoothing import Smoother, is_smoother, list_smoothers
from edgepose.errors import ConfigError, EdgePoseError

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
        smoother: the smoother that runs when ``smoothing`` is on: a name of
            :func:`edgepose.video.smoothing.list_smoothers` or any
            :class:`~edgepose.video.smoothing.Smoother` instance (not closed by
            :meth:`PoseEstimator.close`). ``"one_euro"`` (default; a few microseconds per frame),
            ``"learned_gain"`` (One Euro whose cut-off a tiny network adapts per joint from the
            keypoint scores and motion; zero-lag, ~0.04 ms per frame; less jitter than One Euro on
            the evaluation clips, docs/research-notes.md T4), ``"learned"`` (SmoothNet, shipped in
            ``edgepose/data``, with ``learned_smoother``), ``"fixed_lag_one_euro"`` /
            ``"learned_gain_fixed_lag"`` (2 frames of delay; steadier) or ``"none"``. A smoother
            with a delay of d frames makes the video results come d frames late:
            :meth:`PoseEstimator.detect_for_video` returns frame t - d's result (None for the first
            d frames) and :meth:`PoseEstimator.flush` the last d at the end of the stream.
        one_euro: One Euro parameters of ``smoother="one_euro"`` (see :class:`OneEuroConfig`).
        learned_smoother: options of ``smoother="learned"``. Its ``delay`` (default 0: a result
            describes its own frame) is the estimator's result delay.
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
    smoother: "str | Smoother" = "one_euro"
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
            raise ConfigError(
                f"EstimatorOptions.running_mode {self.running_mode!r} is not one of "
                f"{', '.join(m.value for m in RunningMode)}") from None
        if not 0.0 <= self.min_pose_score <= 1.0:
            raise ConfigError(f"EstimatorOptions.min_pose_score must be in [0, 1], got {self.min_pose_score!r}")
        if self.running_mode == RunningMode.LIVE_STREAM and self.result_callback is None:
            raise ConfigError("EstimatorOptions.result_callback is required in live_stream mode; "
                             "pass result_callback=lambda result, image: ...")
        if self.running_mode != RunningMode.LIVE_STREAM and self.result_callback is not None:
            raise ConfigError("EstimatorOptions.result_callback is only used in live_stream mode; "
                             f"running_mode is {self.running_mode.value!r}")
        if isinstance(self.smoother, str) and self.smoother not in list_smoothers() or \
                not isinstance(self.smoother, str) and not is_smoother(self.smoother):
            raise ConfigError(f"EstimatorOptions.smoother {self.smoother!r} is not one of "
                             f"{', '.join(list_smoothers())}; pass smoother='one_euro' (default), another of those "
                             "names, or a Smoother instance (edgepose.video.smoothing)")
        if not isinstance(self.live_queue_size, int) or self.live_queue_size < 1:
            raise ConfigError(f"EstimatorOptions.live_queue_size must be an int >= 1, got {self.live_queue_size!r}")
        if self.person_selection not in PERSON_SELECTIONS:
            raise ConfigError(f"EstimatorOptions.person_selection {self.person_selection!r} is not one of "
                             f"{', '.join(PERSON_SELECTIONS)}; pass 'model' (default: the model's own full-frame "
                             "pick) or 'nearest' (a person detector; the person nearest the track, else the largest)")
        if not isinstance(self.identity_gate, (int, float)) or not self.identity_gate > 0:
            raise ConfigError(f"EstimatorOptions.identity_gate must be a number > 0 (crop sides), "
                             f"got {self.identity_gate!r}")


class RunningModeChecks:
    """``_require_mode`` / ``_check_ts`` of the single- and multi-person estimators (``options``
    with a ``running_mode``, ``_last_ts``); ``_OPTIONS`` names the options class in the fix."""

    _OPTIONS = "EstimatorOptions"

    def _require_mode(self, mode: RunningMode, method: str) -> None:
        if self.options.running_mode != mode:
            raise EdgePoseError(
                f"{method}() needs running_mode={mode.value!r}, but this estimator was created with "
                f"running_mode={self.options.running_mode.value!r}; create it with "
                f"{self._OPTIONS}(running_mode={mode.value!r})")

    def _check_ts(self, timestamp_ms) -> int:
        ts = int(timestamp_ms)
        if self._last_ts is not None and ts <= self._last_ts:
            raise EdgePoseError(f"timestamp_ms must increase monotonically: got {ts} after {self._last_ts}")
        self._last_ts = ts
        return ts
