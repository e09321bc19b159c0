"""One Euro filter (Casiez et al., CHI 2012), vectorised over keypoint coordinates.

Timestamps are in milliseconds, the time axis shared with the tracker and the latency budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class OneEuroConfig:
    """Filter parameters. The filter's state (position and speed) is kept in pixels; only the
    speed term of the adaptive cut-off is divided by the person's size (``scale``, e.g. the ROI
    side), so the same ``beta`` works for a person far away or close up:
    ``cutoff = min_cutoff + beta * |speed px/s| / scale``.

    The defaults were tuned on the training clips only (the learned smoother's licence-clean
    tracks, ``edgepose.compression.temporal.data.TRAIN_VIDEOS``: body3d_demo 0-298 and
    ``train_extra``; never an evaluation clip) with the estimator's own scale (the ROI side of
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
                raise ValueError(f"OneEuroConfig.{f} must be a finite number >= 0, got {v!r}")
        if self.min_cutoff == 0 or self.d_cutoff == 0:
            raise ValueError("OneEuroConfig.min_cutoff and d_cutoff must be > 0")


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
            raise ValueError(f"OneEuroFilter scale must be > 0, got {scale!r}")
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
