"""One Euro filter (Casiez et al., CHI 2012), vectorised over keypoint coordinates.

Timestamps are in milliseconds, the time axis shared with the tracker and the latency budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    """Filter parameters. Coordinates are filtered in units of the person's size (ROI side),
    so the same defaults work for a person far away or close up.

    Attributes:
        min_cutoff: Hz; cut-off at rest. Lower = steadier pose when still, more lag.
            1.0 Hz removes the 5-15 Hz jitter of per-frame models while keeping slow motion.
        beta: speed coefficient; higher = less lag on fast moves. 20 lets a limb moving at one
            body-size per second raise the cut-off to ~21 Hz (near-zero lag at 30 fps).
        d_cutoff: Hz; cut-off of the derivative estimate (the paper's recommended 1 Hz).
    """

    min_cutoff: float = 1.0
    beta: float = 20.0
    d_cutoff: float = 1.0

    def __post_init__(self):
        for f in ("min_cutoff", "beta", "d_cutoff"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"OneEuroConfig.{f} must be a finite number >= 0, got {v!r}")
        if self.min_cutoff == 0 or self.d_cutoff == 0:
            raise ValueError("OneEuroConfig.min_cutoff and d_cutoff must be > 0")


def _alpha(cutoff: np.ndarray | float, dt_s: float) -> np.ndarray:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """Filters an array of values (e.g. (17, 2) keypoints) sample by sample."""

    def __init__(self, config: OneEuroConfig = OneEuroConfig()):
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, timestamp_ms: float, *, scale: float = 1.0) -> np.ndarray:
        """Filter ``x`` observed at ``timestamp_ms``; ``scale`` = units per 'body size'."""
        x = np.asarray(x, dtype=np.float64) / scale
        if self._x is None or self._t is None or timestamp_ms <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(timestamp_ms)
            return x * scale
        dt = (timestamp_ms - self._t) / 1e3
        c = self.config
        dx = (x - self._x) / dt
        a_d = _alpha(c.d_cutoff, dt)
        dx_hat = a_d * dx + (1 - a_d) * self._dx
        cutoff = c.min_cutoff + c.beta * np.abs(dx_hat)
        a = _alpha(cutoff, dt)
        x_hat = a * x + (1 - a) * self._x
        self._x, self._dx, self._t = x_hat, dx_hat, float(timestamp_ms)
        return x_hat * scale
