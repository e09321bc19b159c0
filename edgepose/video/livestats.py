"""Per-second statistics of a live pose app: fps, p95 latency, budget misses, offload share.

An app calls :meth:`LiveStats.add` once per result and, when :meth:`LiveStats.due` says a
second has passed, logs or prints :meth:`LiveStats.line`::

    t=3s fps 14.9 | latency p50 31.2 p95 44.0 ms | budget 66.7 ms: 0 missed of 15 | offload 7% (cloud 7%) | dropped 12 | people 1.0

Latency is what the user sees: from frame capture (``Frame.captured_at``) to the result. A
window with a model swap ends with ``| model swap N``; with collection samples on
(``LiveStats(collect=True)``: ``RuntimeOptions.collect_interval_ms`` with a server) every line ends
with ``| samples N``, the label-only collection samples sent in that window (not offloads).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from edgepose.errors import ConfigError


@dataclass
class _Window:
    latencies: list[float] = field(default_factory=list)
    misses: int = 0
    offloaded: int = 0
    cloud: int = 0
    people: int = 0
    swaps: int = 0
    samples: int = 0


class LiveStats:
    """Accumulates per-frame figures and formats one line per window.

    Args:
        budget_ms: the per-frame latency budget (None: no budget, misses not counted).
        window_s: length of one window in seconds.
        clock: a ``time.monotonic``-like function (tests pass a fake one).
        collect: collection samples are on: each line says how many were sent (``samples N``).
    """

    def __init__(self, *, budget_ms: float | None = None, window_s: float = 1.0, clock=time.monotonic,
                 collect: bool = False):
        if budget_ms is not None and not budget_ms > 0:
            raise ConfigError(f"LiveStats budget_ms must be > 0 or None, got {budget_ms!r}")
        if not window_s > 0:
            raise ConfigError(f"LiveStats window_s must be > 0, got {window_s!r}")
        self.budget_ms, self.window_s, self._clock = budget_ms, float(window_s), clock
        self.collect = bool(collect)
        self._t0 = self._start = clock()
        self._win = _Window()
        self.total = _Window()

    def add(self, latency_ms: float, *, deadline_met: bool | None = None, offloaded: bool = False,
            cloud: bool = False, people: int = 0, swapped: bool = False, samples: int = 0) -> None:
        """Record one result.

        Args:
            latency_ms: capture-to-result latency.
            deadline_met: the runtime's verdict; None: compare ``latency_ms`` with the budget.
            offloaded: the frame was sent to the offload server.
            cloud: the frame's result came from the server.
            people: how many people the result has.
            swapped: the runtime swapped its model before this frame (``request_swap``).
            samples: collection samples the runtime sent with this frame (0 or 1).
        """
        missed = (not deadline_met) if deadline_met is not None else (
            self.budget_ms is not None and latency_ms > self.budget_ms)
        for w in (self._win, self.total):
            w.latencies.append(float(latency_ms))
            w.misses += int(bool(missed))
            w.offloaded += int(bool(offloaded))
            w.cloud += int(bool(cloud))
            w.people += int(people)
            w.swaps += int(bool(swapped))
            w.samples += int(samples)

    def due(self) -> bool:
        """Whether the current window is complete."""
        return self._clock() - self._start >= self.window_s

    def line(self, *, dropped: int | None = None) -> str:
        """The current window as one line; starts the next window."""
        now = self._clock()
        text = format_line(self._win, now - self._start, now - self._t0, self.budget_ms, dropped, collect=self.collect)
        self._win, self._start = _Window(), now
        return text

    def summary(self, *, dropped: int | None = None) -> str:
        """The whole run as one line."""
        return format_line(self.total, self._clock() - self._t0, None, self.budget_ms, dropped, collect=self.collect)


def format_line(w: _Window, span_s: float, t_s: float | None, budget_ms: float | None,
                dropped: int | None, *, collect: bool = False) -> str:
    n = len(w.latencies)
    head = f"t={t_s:.0f}s " if t_s is not None else "total "
    parts = [f"{head}fps {n / span_s if span_s > 0 else 0.0:.1f}"]
    if n:
        lat = np.asarray(w.latencies)
        parts.append(f"latency p50 {np.percentile(lat, 50):.1f} p95 {np.percentile(lat, 95):.1f} ms")
    else:
        parts.append("latency -")
    if budget_ms is not None:
        parts.append(f"budget {budget_ms:.1f} ms: {w.misses} missed of {n}")
    share = 100.0 * w.offloaded / n if n else 0.0
    parts.append(f"offload {share:.0f}% (cloud {100.0 * w.cloud / n if n else 0.0:.0f}%)")
    if dropped is not None:
        parts.append(f"dropped {dropped}")
    parts.append(f"people {w.people / n if n else 0.0:.1f}")
    if w.swaps:
        parts.append(f"model swap {w.swaps}")
    if collect or w.samples:
        parts.append(f"samples {w.samples}")
    return " | ".join(parts)


__all__ = ["LiveStats", "format_line"]
