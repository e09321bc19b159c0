"""Latency budget: per-stage EWMA and percentiles, deadline misses, keyframe-interval control.

All latencies are in ms. A frame's latency runs from its arrival (capture) to its result, so
frames that queue behind a slow one pay for it; that is what a live app sees.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np


class LatencyStats:
    """EWMA plus percentiles over a sliding window of samples.

    Args:
        window: samples kept for percentiles (300 = 10 s at 30 fps).
        alpha: EWMA weight of a new sample (0.1 ~ the last 10 samples).
    """

    def __init__(self, window: int = 300, alpha: float = 0.1):
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"LatencyStats.window must be an int >= 1, got {window!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"LatencyStats.alpha must be in (0, 1], got {alpha!r}")
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
            raise ValueError(f"BudgetTracker.budget_ms must be > 0, got {budget_ms!r}")
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


@dataclass
class KeyframeConfig:
    """Options of :class:`KeyframeController`.

    Attributes:
        k_min: smallest keyframe interval (1: the net runs on every frame).
        k_max: largest interval; above 4 at 30 fps propagated poses lag visibly on fast motion.
        target_within: share of frames to hold within budget (the issue's 99 %).
        min_events: keyframe misses in the window before k rises: one outlier (a cold start,
            a scheduler hiccup on a shared machine) is noise, two are a trend.
        cooldown: frames between two changes of k (lets the statistics follow the change).
        window: keyframes the decision looks at.
    """

    k_min: int = 1
    k_max: int = 4
    target_within: float = 0.99
    min_events: int = 2
    cooldown: int = 30
    window: int = 100

    def __post_init__(self):
        if not isinstance(self.k_min, int) or self.k_min < 1:
            raise ValueError(f"KeyframeConfig.k_min must be an int >= 1, got {self.k_min!r}")
        if not isinstance(self.k_max, int) or self.k_max < self.k_min:
            raise ValueError(f"KeyframeConfig.k_max must be an int >= k_min ({self.k_min}), got {self.k_max!r}")
        if not 0.0 < self.target_within < 1.0:
            raise ValueError(f"KeyframeConfig.target_within must be in (0, 1), got {self.target_within!r}")
        if not isinstance(self.min_events, int) or self.min_events < 1:
            raise ValueError(f"KeyframeConfig.min_events must be an int >= 1, got {self.min_events!r}")
        if not isinstance(self.window, int) or self.window < 10:
            raise ValueError(f"KeyframeConfig.window must be an int >= 10, got {self.window!r}")


class KeyframeController:
    """Adapts the keyframe interval k to hold ``target_within`` of frames within budget.

    The net runs on keyframes; frames between them are propagated (near-free), so misses are
    keyframe misses and the missed share is about ``P(keyframe misses) / k`` (a larger k also
    lets a queue behind a slow keyframe drain). From the keyframe miss rate p over the window
    the controller wants ``k = ceil(p / (1 - target_within))``; it moves one step at a time,
    at most once per ``cooldown`` frames, and lowers k only after a window without misses.

    Args:
        budget_ms: the per-frame budget.
        config: :class:`KeyframeConfig`.
    """

    def __init__(self, budget_ms: float, config: KeyframeConfig | None = None):
        self.config = config or KeyframeConfig()
        self.budget_ms = float(budget_ms)
        self.k = self.config.k_min
        self._since_key = 0
        self._since_change = 0
        self._key_miss: collections.deque[bool] = collections.deque(maxlen=self.config.window)
        self.changes: list[tuple[int, int]] = []  # (frame number, new k)
        self._frames = 0

    def is_keyframe(self, force: bool = False) -> bool:
        """Whether the next frame runs the net (``force``: it must, e.g. no pose to propagate)."""
        return force or self._since_key + 1 >= self.k

    def update(self, latency_ms: float, *, keyframe: bool) -> int:
        """Record the frame just finished; returns the k for the next frames."""
        c = self.config
        self._frames += 1
        self._since_change += 1
        self._since_key = 0 if keyframe else self._since_key + 1
        if keyframe:
            self._key_miss.append(latency_ms > self.budget_ms)
        if self._since_change < c.cooldown:
            return self.k
        misses = sum(self._key_miss)
        rate = misses / max(1, len(self._key_miss))
        want = math.ceil(rate / (1.0 - c.target_within)) if misses >= c.min_events else c.k_min
        if want > self.k and self.k < c.k_max:
            self._set(self.k + 1)
        elif misses == 0 and len(self._key_miss) >= c.window // 2 and self.k > c.k_min:
            self._set(self.k - 1)
        return self.k

    def _set(self, k: int) -> None:
        self.k = k
        self._since_change = 0
        self._key_miss.clear()
        self.changes.append((self._frames, k))
