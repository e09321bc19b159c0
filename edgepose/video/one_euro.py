"""One Euro filter (Casiez et al., CHI 2012), vectorised over keypoint coordinates.

:class:`OneEuroFilter` is causal (zero delay); :class:`FixedLagOneEuro` runs it with a declared
look-ahead of d frames (forward-backward or triangular), the One Euro baseline at the delay of a
fixed-delay smoother (docs/research-notes.md T5).

Timestamps are in milliseconds, the time axis shared with the tracker and the latency budget.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
from edgepose.errors import ConfigError

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class OneEuroConfig:
    """Filter parameters. The filter's state (position and speed) is kept in pixels; only the
    speed term of the adaptive cut-off is divided by the person's size (``scale``, e.g. the ROI
    side), so the same ``beta`` works for a person far away or close up:
    ``cutoff = min_cutoff + beta * |speed px/s| / scale``.

    The defaults were tuned on training clips only (the learned smoother's tracks as they were then:
    body3d_demo 0-298 and ``train_extra``; never an evaluation clip; that list also held six clips
    later found outside the shippable allow-list and removed, research-notes.md L1: re-tuned on the
    clean list ``edgepose.compression.temporal.data.TRAIN_VIDEOS`` the coarse grid picks 0.5 Hz /
    beta 10; the two constants were kept) with the estimator's own scale (the ROI side of
    each frame), against the teacher's tracks (MoveNet Thunder): the grid point with the lowest
    mean acceleration error among those whose mean position error is at most the unfiltered
    track's + 0.5 px (``python -m edgepose.compression.temporal.baselines``, coarse grid).
    Pooled over those clips: acceleration error 16.3 -> 6.9 px/frame^2, position error
    10.7 -> 11.0 px; the former defaults (1 Hz, beta 20) give 8.0 and 10.2 px with this
    filter. (An earlier version kept its state divided by the per-frame scale, so every change
    of the ROI side moved the output: it was worse than no filter on the evaluation clips.)

    Attributes:
        min_cutoff: Hz; cut-off at rest. Lower = steadier pose when still, more lag.
        beta: speed coefficient, per body size per second; higher = less lag on fast moves (a
            limb moving at one ROI side per second raises the cut-off by ``beta`` Hz).
        d_cutoff: Hz; cut-off of the speed estimate (the paper's recommended 1 Hz).
    """

    # Chosen on the training clips as described above: the lowest acceleration error with
    # position error <= unfiltered + 0.5 px, grid min_cutoff 0.5-8 Hz x beta 0-50, d_cutoff 1 Hz.
    min_cutoff: float = 1.5
    beta: float = 5.0
    d_cutoff: float = 1.0

    def __post_init__(self):
        for f in ("min_cutoff", "beta", "d_cutoff"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ConfigError(f"OneEuroConfig.{f} must be a finite number >= 0, got {v!r}")
        if self.min_cutoff == 0 or self.d_cutoff == 0:
            raise ConfigError("OneEuroConfig.min_cutoff and d_cutoff must be > 0")


class OneEuroFilter:
    """Filters an array of values (e.g. (17, 2) keypoints) sample by sample.

    Runs every frame inside the runtime-overhead budget: a handful of numpy operations on the
    whole array, the scalar smoothing factors computed with ``math``.
    """

    def __init__(self, config: OneEuroConfig = OneEuroConfig()):
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None  # last filtered value (px)
        self._dx: np.ndarray | None = None  # last filtered speed (px / s)
        self._t: float | None = None

    def __call__(self, x: np.ndarray, timestamp_ms: float, *, scale: float = 1.0) -> np.ndarray:
        """Filter ``x`` (pixels) observed at ``timestamp_ms``.

        Args:
            x: the values, any shape (the same every call until :meth:`reset`).
            timestamp_ms: the sample's time; a time not after the previous one restarts the filter.
            scale: the person's size in the units of ``x`` (e.g. the ROI side in px); it only
                divides the speed in the adaptive cut-off, and may change every frame.

        Returns:
            The filtered values (a new float64 array).
        """
        if not scale > 0:
            raise ConfigError(f"OneEuroFilter scale must be > 0, got {scale!r}")
        x = np.asarray(x, dtype=np.float64)
        t = float(timestamp_ms)
        if self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        c = self.config
        dt = (t - self._t) * 1e-3
        # alpha = 1 / (1 + tau / dt), tau = 1 / (2 pi f)  ->  r / (1 + r), r = 2 pi f dt
        r_d = _TWO_PI * c.d_cutoff * dt
        a_d = r_d / (1.0 + r_d)
        diff = x - self._x
        dx_hat = diff * (a_d / dt)
        dx_hat += (1.0 - a_d) * self._dx
        r = np.abs(dx_hat)
        r *= _TWO_PI * dt * c.beta / scale
        r += _TWO_PI * dt * c.min_cutoff
        diff *= r / (1.0 + r)
        diff += self._x
        self._x, self._dx, self._t = diff, dx_hat, t
        return diff.copy()


# -- fixed-lag One Euro: the baseline at the learned smoother's delay ---------------------------

#: The fixed-lag smoothing methods of :class:`FixedLagOneEuro`.
FIXED_LAG_METHODS = ("forward-backward", "triangular")
#: The largest delay (frames) of :class:`FixedLagOneEuro`; its cost per frame grows with it.
MAX_FIXED_LAG = 32


def check_fixed_lag(delay, method: str = "forward-backward") -> int:
    """Validate a fixed-lag delay (an int from 0 to :data:`MAX_FIXED_LAG`) and method."""
    import numbers

    if isinstance(delay, bool) or not isinstance(delay, numbers.Integral) or not 0 <= delay <= MAX_FIXED_LAG:
        raise ConfigError(f"FixedLagOneEuro delay must be an int from 0 to {MAX_FIXED_LAG} (frames), "
                         f"got {delay!r}")
    if method not in FIXED_LAG_METHODS:
        raise ConfigError(f"FixedLagOneEuro method must be one of {FIXED_LAG_METHODS}, got {method!r}")
    return int(delay)


def triangular_weights(h: int) -> np.ndarray:
    """The centred (2h+1)-tap triangular kernel, normalised: ``h + 1 - |i|`` for i = -h..h."""
    w = (h + 1.0) - np.abs(np.arange(-h, h + 1, dtype=np.float64))
    return w / w.sum()


@dataclass
class LaggedValue:
    """One output of :class:`FixedLagOneEuro`: input number ``index`` (from 0), its timestamp, and
    its smoothed value (None where the input had none)."""

    index: int
    timestamp_ms: float
    value: np.ndarray | None


class FixedLagOneEuro:
    """One Euro with a fixed, declared delay of ``delay`` frames: the baseline to compare a
    fixed-delay smoother (e.g. :class:`edgepose.video.smoother.LearnedSmoother` at the same
    delay) with.

    After frame t arrives it emits frame ``t - delay``, computed from frames ``<= t`` only;
    :meth:`flush` emits the last ``delay`` frames at the end of the stream. Two methods, both
    built on the causal :class:`OneEuroFilter` (the same parameters, the same speed
    normalisation by ``scale``):

    * ``"forward-backward"``: the causal filter's output ``f(t-d)`` averaged with a backward
      One Euro pass ``b(t-d)``, started at the newest observation ``x(t)`` (speed 0) and run
      back over ``x(t-1) .. x(t-d)`` (each with its own ``scale`` and time step):
      ``(f + b) / 2``. The forward estimate lags a moving joint and the backward one leads it,
      so the lags cancel in part.
    * ``"triangular"``: the centred (2d+1)-tap triangular average of the causal filter's
      outputs ``f(t-2d) .. f(t)``.

    A frame without a pose (``None`` or any non-finite value) or a timestamp not after the
    previous one ends a segment: the causal filter restarts (as :class:`OneEuroFilter` does at
    a pose loss), and neither method reads across the break: a frame near it uses the frames of
    its own segment only (the backward pass starts at the segment's last frame, the triangular
    window shrinks symmetrically). A frame with no newer frame in its segment, and every frame
    at ``delay=0``, is the causal filter's output exactly.

    Args:
        config: the One Euro parameters.
        delay: frames of look-ahead (an int from 0 to :data:`MAX_FIXED_LAG`).
        method: one of :data:`FIXED_LAG_METHODS`.
        causal: (``"triangular"`` only) the causal filter whose outputs are averaged, in place of
            ``OneEuroFilter(config)``: any object with ``reset()`` and
            ``__call__(x, timestamp_ms, scale=..., scores=...)`` returning (17, 2), e.g.
            :class:`edgepose.video.gain_filter.LearnedGainFilter` (then pass ``scores=`` to
            :meth:`push`).
    """

    def __init__(self, config: OneEuroConfig = OneEuroConfig(), delay: int = 2,
                 method: str = "forward-backward", *, causal=None):
        self.delay = check_fixed_lag(delay, method)
        if causal is not None and method != "triangular":
            raise ConfigError(f"FixedLagOneEuro(causal=...) needs method='triangular' (the "
                             f"forward-backward pass is One Euro's own), got method={method!r}")
        self.method = method
        self.config = config
        self._causal = causal
        self.reset()

    def reset(self) -> None:
        """Forget the history; pending frames are dropped."""
        if self._causal is not None:
            self._causal.reset()
        self._fwd = self._causal if self._causal is not None else OneEuroFilter(self.config)
        # (index, t, x, scale, forward output, segment id); x / forward are None without a pose
        self._buf: collections.deque = collections.deque(maxlen=2 * self.delay + 1)
        self._count = 0
        self._pending = 0
        self._seg = 0
        self._last_t: float | None = None  # time of the previous frame, if it had a pose

    def push(self, x: np.ndarray | None, timestamp_ms: float, *,
             scale: float = 1.0, scores: np.ndarray | None = None) -> list[LaggedValue]:
        """Add the next frame's values (None: no pose); returns the frame ``delay`` frames back
        once it is known: [] while the first ``delay`` frames fill the look-ahead, then exactly
        one :class:`LaggedValue`. ``scale`` as in :meth:`OneEuroFilter.__call__`; ``scores``:
        the (17,) keypoint scores, passed on to a ``causal`` filter that reads them."""
        t = float(timestamp_ms)
        arr = None if x is None else np.asarray(x, dtype=np.float64)
        if arr is not None and np.isfinite(arr).all():
            if not scale > 0:
                raise ConfigError(f"FixedLagOneEuro scale must be > 0, got {scale!r}")
            if self._last_t is None or t <= self._last_t:
                self._seg += 1  # a new segment: the causal filter restarts too
                self._fwd.reset()
            kw = {} if self._causal is None else {"scores": scores}
            entry = (self._count, t, arr.copy(), float(scale), self._fwd(arr, t, scale=scale, **kw), self._seg)
            self._last_t = t
        else:
            self._fwd.reset()
            self._last_t = None
            entry = (self._count, t, None, None, None, -1)
        self._buf.append(entry)
        self._count += 1
        self._pending += 1
        if self._pending <= self.delay:
            return []
        return [self._emit()]

    def flush(self) -> list[LaggedValue]:
        """End of stream: emit the frames still waiting for their look-ahead (``delay`` of them
        once at least ``delay`` frames were pushed)."""
        out = []
        while self._pending:
            out.append(self._emit())
        return out

    def _emit(self) -> LaggedValue:
        buf = self._buf
        pos = len(buf) - self._pending
        self._pending -= 1
        idx, t, x, _, f, seg = buf[pos]
        if x is None:
            return LaggedValue(idx, t, None)
        ahead = pos
        while ahead + 1 < len(buf) and buf[ahead + 1][5] == seg:
            ahead += 1
        if ahead == pos:  # no newer frame of this segment: the causal output
            return LaggedValue(idx, t, f.copy())
        if self.method == "forward-backward":
            back = OneEuroFilter(self.config)  # time runs backwards: timestamps negated
            for j in range(ahead, pos - 1, -1):
                b = back(buf[j][2], -buf[j][1], scale=buf[j][3])
            return LaggedValue(idx, t, 0.5 * (f + b))
        before = pos
        while before > 0 and buf[before - 1][5] == seg:
            before -= 1
        h = min(ahead - pos, pos - before, self.delay)
        w = triangular_weights(h)
        out = w[0] * buf[pos - h][4]
        for i in range(1, 2 * h + 1):
            out = out + w[i] * buf[pos - h + i][4]
        return LaggedValue(idx, t, out)
