"""One interface for every keypoint smoother the SDK ships, and the registry users pick them from.

A smoother (:class:`Smoother`) takes one frame's pose at a time and declares its ``delay`` in
frames: the answer to frame ``t`` is the smoothed pose of frame ``t - delay``, computed from
frames ``<= t`` only. ``delay=0`` smoothers answer for the frame just given.

    sm = make_smoother("fixed_lag_one_euro")          # or any name of list_smoothers()
    for res in results:
        p = res.pose
        out = sm.update(p and p.keypoints, p and p.scores, res.timestamp_ms)
        ...                                            # out: frame (n - sm.delay)'s keypoints
    tail = sm.flush()                                  # the last sm.delay frames

The registry holds the smoothers that earned their place (docs/research-notes.md T1-T9):

============================  =====  =============================================================
name                          delay  what it is
============================  =====  =============================================================
``none``                      0      the model's keypoints unchanged
``one_euro``                  0      :class:`~edgepose.video.one_euro.OneEuroFilter` (the default)
``learned_gain``              0      One Euro whose cut-off a tiny network adapts per joint
                                     (:class:`~edgepose.video.gain_filter.LearnedGainFilter`)
``fixed_lag_one_euro``        2      :class:`~edgepose.video.one_euro.FixedLagOneEuro`, triangular,
                                     tuned on the training clips (:data:`TUNED_FIXED_LAG`)
``learned_gain_fixed_lag``    2      the same with a learned-gain causal stage
                                     (:func:`~edgepose.video.gain_filter.learned_fixed_lag_one_euro`)
``learned``                   0..16  SmoothNet (:class:`~edgepose.video.smoother.LearnedSmoother`);
                                     its ``SmootherOptions.delay`` (default here: 0)
============================  =====  =============================================================

:class:`~edgepose.PoseEstimator` takes any of them by name or as an instance
(``EstimatorOptions(smoother=...)``); a smoother with a delay makes the estimator's video results
come ``delay`` frames late (see :meth:`~edgepose.PoseEstimator.detect_for_video`).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from edgepose.errors import ConfigError, unknown_name
from edgepose.video._temporal import frame_side
from edgepose.video.one_euro import FixedLagOneEuro, OneEuroConfig, OneEuroFilter

#: The fixed-lag One Euro setting tuned on the training clips (504-setting grid,
#: docs/research-notes.md T5): triangular, 2 frames, 4 Hz, beta 0, d_cutoff 0.5.
TUNED_FIXED_LAG = OneEuroConfig(min_cutoff=4.0, beta=0.0, d_cutoff=0.5)


@runtime_checkable
class Smoother(Protocol):
    """What the estimator (and any frame loop) needs of a keypoint smoother.

    Attributes:
        delay: frames between a frame going in and its smoothed pose coming out.
    """

    delay: int

    def reset(self) -> None:
        """Forget the history (a scene cut, another person); pending frames are dropped."""

    def update(self, keypoints: np.ndarray | None, scores: np.ndarray | None, timestamp_ms: float, *,
               scale: float | None = None) -> np.ndarray | None:
        """Add frame ``t``'s pose ((17, 2) px and (17,) scores; None: no person, the smoothing
        restarts after it) and return frame ``t - delay``'s smoothed (17, 2) float32 keypoints:
        None for the first ``delay`` calls after a reset and where that frame had no pose.
        ``scale``: the person's size in px (the estimator passes its crop side); None: the
        pose's bounding-box side."""

    def flush(self) -> list[np.ndarray | None]:
        """End of stream: the last ``delay`` frames' smoothed keypoints, in order."""

    def close(self) -> None:
        """Release what the smoother holds (an ONNX session)."""


def _scale(keypoints: np.ndarray, scale: float | None) -> float:
    return float(scale) if scale is not None else float(frame_side(keypoints))


def _f32(x) -> np.ndarray | None:
    return None if x is None else np.asarray(x, dtype=np.float32)


class NoSmoother:
    """The model's keypoints unchanged (``"none"``)."""

    delay = 0

    def reset(self) -> None:
        pass

    def update(self, keypoints, scores, timestamp_ms, *, scale=None):
        return None if keypoints is None else np.array(keypoints, dtype=np.float32)

    def flush(self) -> list:
        return []

    def close(self) -> None:
        pass


class _ZeroLagFilter:
    """A zero-delay filter object (``reset()``, ``__call__(kps, ts, scale=...)``) behind :class:`Smoother`."""

    delay = 0
    _reads_scores = False

    def reset(self) -> None:
        self.filter.reset()

    def update(self, keypoints, scores, timestamp_ms, *, scale=None):
        if keypoints is None:
            self.filter.reset()
            return None
        kps = np.asarray(keypoints, dtype=np.float64)
        extra = {"scores": scores} if self._reads_scores else {}
        return _f32(self.filter(kps, timestamp_ms, scale=_scale(kps, scale), **extra))

    def flush(self) -> list:
        return []

    def close(self) -> None:
        getattr(self.filter, "close", lambda: None)()


class OneEuroSmoother(_ZeroLagFilter):
    """:class:`~edgepose.video.one_euro.OneEuroFilter` behind :class:`Smoother` (``"one_euro"``)."""

    def __init__(self, config: OneEuroConfig | None = None):
        self.filter = OneEuroFilter(config or OneEuroConfig())


class LearnedGainSmoother(_ZeroLagFilter):
    """:class:`~edgepose.video.gain_filter.LearnedGainFilter` behind :class:`Smoother`
    (``"learned_gain"``); it reads the scores."""

    _reads_scores = True

    def __init__(self, model_path=None, config: OneEuroConfig | None = None):
        from edgepose.video.gain_filter import LearnedGainFilter

        self.filter = LearnedGainFilter(model_path, config)


class FixedLagSmoother:
    """:class:`~edgepose.video.one_euro.FixedLagOneEuro` behind :class:`Smoother`
    (``"fixed_lag_one_euro"``; ``"learned_gain_fixed_lag"`` wraps one with a learned causal stage).

    Args:
        config: the One Euro parameters (default :data:`TUNED_FIXED_LAG`).
        delay: frames of look-ahead.
        method: ``"triangular"`` (tuned) or ``"forward-backward"``.
        filter: an existing :class:`FixedLagOneEuro` to wrap instead (the other arguments unused).
    """

    def __init__(self, config: OneEuroConfig | None = None, delay: int = 2, method: str = "triangular", *,
                 filter: FixedLagOneEuro | None = None):
        self.filter = filter if filter is not None else FixedLagOneEuro(config or TUNED_FIXED_LAG, delay, method)
        self.delay = self.filter.delay

    def reset(self) -> None:
        self.filter.reset()

    def update(self, keypoints, scores, timestamp_ms, *, scale=None):
        kps = None if keypoints is None else np.asarray(keypoints, dtype=np.float64)
        s = 1.0 if kps is None else _scale(kps, scale)
        out = self.filter.push(kps, timestamp_ms, scale=s, scores=scores)
        return _f32(out[0].value) if out else None

    def flush(self) -> list:
        return [_f32(v.value) for v in self.filter.flush()]

    def close(self) -> None:
        causal = getattr(self.filter, "_causal", None)
        if causal is not None and hasattr(causal, "close"):
            causal.close()


def learned_gain_fixed_lag(model_path=None) -> FixedLagSmoother:
    """``"learned_gain_fixed_lag"``: :func:`~edgepose.video.gain_filter.learned_fixed_lag_one_euro`
    (delay and One Euro base from the model's metadata: 2 frames for the shipped one)."""
    from edgepose.video.gain_filter import learned_fixed_lag_one_euro

    return FixedLagSmoother(filter=learned_fixed_lag_one_euro(model_path))


class SmoothNetSmoother:
    """:class:`~edgepose.video.smoother.LearnedSmoother` (SmoothNet) behind :class:`Smoother`
    (``"learned"``); its delay is ``options.delay`` (default here 0: zero-lag).

    Args:
        options: :class:`~edgepose.video.smoother.SmootherOptions`.
    """

    def __init__(self, options=None):
        from edgepose.video.smoother import LearnedSmoother, SmootherOptions

        self.smoother = LearnedSmoother(options if options is not None else SmootherOptions(delay=0))
        self.delay = self.smoother.delay

    def reset(self) -> None:
        self.smoother.reset()

    def update(self, keypoints, scores, timestamp_ms, *, scale=None):
        out = self.smoother.push(keypoints, timestamp_ms, scores=scores)
        return _f32(out[0].keypoints) if out else None

    def flush(self) -> list:
        return [_f32(f.keypoints) for f in self.smoother.flush()]

    def close(self) -> None:
        self.smoother.close()


_REGISTRY: dict[str, Callable[..., Smoother]] = {
    "none": NoSmoother,
    "one_euro": OneEuroSmoother,
    "learned_gain": LearnedGainSmoother,
    "fixed_lag_one_euro": FixedLagSmoother,
    "learned_gain_fixed_lag": learned_gain_fixed_lag,
    "learned": SmoothNetSmoother,
}


def list_smoothers() -> tuple[str, ...]:
    """The registered smoother names."""
    return tuple(_REGISTRY)


def register_smoother(name: str, factory: Callable[..., Smoother]) -> None:
    """Make ``factory(**kwargs)`` available as ``make_smoother(name, **kwargs)`` (and to the estimator)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"smoother name must be a non-empty str, got {name!r}")
    _REGISTRY[name] = factory


def is_smoother(obj) -> bool:
    """Whether ``obj`` has what :class:`Smoother` needs (an int ``delay``, reset / update / flush / close)."""
    return isinstance(obj, Smoother) and isinstance(getattr(obj, "delay", None), int)


def make_smoother(spec: str | Smoother = "one_euro", **kwargs) -> Smoother:
    """A smoother by registry name (``kwargs`` go to its constructor), or ``spec`` itself when it
    already is one."""
    if not isinstance(spec, str):
        if not is_smoother(spec):
            raise ConfigError(f"{type(spec).__name__} is not a smoother: it needs an int delay and "
                             "reset(), update(keypoints, scores, timestamp_ms, scale=...), flush(), close()")
        return spec
    if spec not in _REGISTRY:
        raise unknown_name("smoother", spec, list_smoothers(), "pass one of those or a Smoother instance")
    return _REGISTRY[spec](**kwargs)


__all__ = ["Smoother", "NoSmoother", "OneEuroSmoother", "LearnedGainSmoother", "FixedLagSmoother",
           "SmoothNetSmoother", "learned_gain_fixed_lag", "TUNED_FIXED_LAG", "list_smoothers",
           "register_smoother", "make_smoother", "is_smoother"]
