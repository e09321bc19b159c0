"""Timing statistics: per-stage EWMA and percentiles, per-frame latency against a budget.

All latencies are in ms. A frame's latency runs from its arrival (capture) to its result, so
frames that queue behind a slow one pay for it; that is what a live app sees. The controllers
that act on these statistics are in :mod:`edgepose.offload.controllers`.
"""

from __future__ import annotations

import collections
import math

import numpy as np
from edgepose.errors import ConfigError


class LatencyStats:
    """EWMA plus percentiles over a sliding window of samples.

    Args:
        window: samples kept for percentiles (300 = 10 s at 30 fps).
        alpha: EWMA weight of a new sample (0.1 ~ the last 10 samples).
    """

    def __init__(self, window: int = 300, alpha: float = 0.1):
        if not isinstance(window, int) or window < 1:
            raise ConfigError(f"LatencyStats.window must be an int >= 1, got {window!r}")
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"LatencyStats.alpha must be in (0, 1], got {alpha!r}")
        self.alpha = alpha
        self._win: collections.deque[float] = collections.deque(maxlen=window)
        self.ewma: float | None = None
        self.count = 0

    def add(self, ms: float) -> None:
        ms = float(ms)
        self.count += 1
        self._win.append(ms)
        self.ewma = ms if self.ewma is None else self.ewma + self.alpha * (ms - self.ewma)

    def percentile(self, q: float, default: float = math.nan) -> float:
        """The ``q``-th percentile (0-100) of the window, ``default`` when empty."""
        return float(np.percentile(np.fromiter(self._win, float), q)) if self._win else default

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "ewma": self.ewma if self.ewma is not None else math.nan,
                "p50": self.percentile(50), "p95": self.percentile(95), "p99": self.percentile(99)}


class BudgetTracker:
    """Per-frame latency against a budget, with per-stage statistics.

    Args:
        budget_ms: the per-frame latency budget.
        window: see :class:`LatencyStats`.
    """

    def __init__(self, budget_ms: float, *, window: int = 300):
        if not budget_ms > 0:
            raise ConfigError(f"BudgetTracker.budget_ms must be > 0, got {budget_ms!r}")
        self.budget_ms = float(budget_ms)
        self.window = window
        self.frame = LatencyStats(window)
        self.stages: dict[str, LatencyStats] = {}
        self.frames = 0
        self.misses = 0
        self._recent: collections.deque[bool] = collections.deque(maxlen=window)

    def record(self, latency_ms: float, stages: dict[str, float] | None = None) -> bool:
        """Record one frame; returns whether it met the budget."""
        met = latency_ms <= self.budget_ms
        self.frames += 1
        self.misses += not met
        self._recent.append(met)
        self.frame.add(latency_ms)
        for k, v in (stages or {}).items():
            self.stages.setdefault(k, LatencyStats(self.window)).add(v)
        return met

    @property
    def within_rate(self) -> float:
        """Share of all frames so far within budget (1.0 before the first frame)."""
        return 1.0 - self.misses / self.frames if self.frames else 1.0

    @property
    def recent_within_rate(self) -> float:
        return float(np.mean(self._recent)) if self._recent else 1.0

    def summary(self) -> dict:
        return {"budget_ms": self.budget_ms, "frames": self.frames, "deadline_misses": self.misses,
                "within_budget": round(self.within_rate, 4), "frame_ms": self.frame.summary(),
                "stages_ms": {k: v.summary() for k, v in self.stages.items()}}


__all__ = ["LatencyStats", "BudgetTracker"]
