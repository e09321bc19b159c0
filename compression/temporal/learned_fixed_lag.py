"""Learned fixed-lag smoother: a learned FIR on the causal One Euro output (the fixed-lag prior).

:class:`~edgepose.video.one_euro.FixedLagOneEuro` (``method="triangular"``) emits frame
``t - d`` as the centred (2d+1)-tap triangular average of the causal One Euro outputs
``f(t-2d) .. f(t)``. Here the taps are learned: frame ``t - d`` is

    ``sum_i w_i f(t-2d+i) + sum_i u_i x(t-2d+i)``,   i = 0 .. 2d,

with ``x`` the raw observations, the taps shared by the 17 joints and x / y, and
``sum(w) + sum(u) = 1`` (a translated pose is translated). The learned taps are used on full
windows only (``d`` frames of the segment on each side); frames nearer a pose loss or a
stream's end fall back to the triangular baseline of the shrunken window, exactly as
:class:`FixedLagOneEuro` does. With the triangular taps and ``u = 0``
(:meth:`FixedLagTaps.triangular`) the smoother *is* the triangular fixed-lag One Euro, bit for
bit. The delay is ``d`` frames (frames ``<= t`` only).

Linear, so the runtime is numpy only: the taps and the One Euro parameters fit a small JSON file
(:meth:`FixedLagTaps.save` / :meth:`FixedLagTaps.load`). Training:
:mod:`edgepose.compression.temporal.fixed_lag_fir`; selection and results:
docs/research-notes.md T6. Nothing is shipped: the candidate chosen on
held-out training clips did not beat the triangular fixed-lag One Euro on every evaluation clip
(T6), so no tap file is in ``edgepose/data`` and this module lives with its trainer
(:mod:`.fixed_lag_fir`), outside the runtime package.

Frame-indexed taps depend on the frame rate. :class:`RateSwitchedTaps` /
:class:`RateSwitchedFixedLag` hold two tap sets, one for streams below a frame-rate threshold and
one for the rest, and pick between them online from the median time step of the most recent
frames (docs/research-notes.md T7, trained with frame-rate augmentation). Round
C's chosen two-rate candidate qualified on the held-out training clips but lost to the triangular
fixed-lag One Euro on pose_squats (5 fps, T7):
still nothing is shipped.
"""

from __future__ import annotations

import collections
import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepose.video.one_euro import (MAX_FIXED_LAG, FixedLagOneEuro, LaggedValue, OneEuroConfig,
                                     check_fixed_lag, triangular_weights)
from edgepose.errors import ConfigError


@dataclass(frozen=True)
class FixedLagTaps:
    """The learned smoother's parameters.

    Attributes:
        config: the causal One Euro filter producing ``f``.
        delay: d, frames of look-ahead (1 to :data:`MAX_FIXED_LAG`).
        prior: (2d+1,) taps on ``f(t-2d) .. f(t)``.
        raw: (2d+1,) taps on ``x(t-2d) .. x(t)`` (zeros: the prior only).
    """

    config: OneEuroConfig
    delay: int
    prior: tuple[float, ...]
    raw: tuple[float, ...]

    def __post_init__(self):
        import numbers

        d = self.delay
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 1 <= d <= MAX_FIXED_LAG:
            raise ConfigError(f"FixedLagTaps.delay must be an int from 1 to {MAX_FIXED_LAG} (frames), got {d!r}")
        n = 2 * d + 1
        for name in ("prior", "raw"):
            v = getattr(self, name)
            if len(v) != n or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
                raise ConfigError(f"FixedLagTaps.{name} must be {n} finite numbers (2 * delay + 1), got {v!r}")
        total = sum(self.prior) + sum(self.raw)
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"FixedLagTaps taps must sum to 1 (prior + raw), got {total!r}")

    @classmethod
    def triangular(cls, config: OneEuroConfig, delay: int) -> "FixedLagTaps":
        """The identity initialisation: the triangular fixed-lag One Euro's taps."""
        d = check_fixed_lag(delay, "triangular")
        if d == 0:
            raise ConfigError(f"FixedLagTaps.delay must be an int from 1 to {MAX_FIXED_LAG} (frames), got 0")
        return cls(config, d, tuple(float(w) for w in triangular_weights(d)), (0.0,) * (2 * d + 1))

    @property
    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.prior, np.float64), np.asarray(self.raw, np.float64)

    def to_dict(self) -> dict:
        return {"kind": "fixed_lag_fir", "delay": self.delay, "one_euro": dict(self.config.__dict__),
                "prior": list(self.prior), "raw": list(self.raw)}

    @classmethod
    def from_dict(cls, d: dict) -> "FixedLagTaps":
        if d.get("kind") != "fixed_lag_fir":
            raise ConfigError(f"not a fixed-lag FIR tap file: kind {d.get('kind')!r} (expected 'fixed_lag_fir')")
        return cls(OneEuroConfig(**d["one_euro"]), int(d["delay"]), tuple(map(float, d["prior"])),
                   tuple(map(float, d["raw"])))

    def save(self, path: str | os.PathLike, **extra) -> None:
        Path(path).write_text(json.dumps({**self.to_dict(), **extra}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FixedLagTaps":
        return cls.from_dict(json.loads(Path(path).read_text()))


class LearnedFixedLag(FixedLagOneEuro):
    """Online learned fixed-lag smoother: the push / flush interface of
    :class:`~edgepose.video.one_euro.FixedLagOneEuro` (same delay, segments, fall-backs), with
    :class:`FixedLagTaps` on full windows.

    Args:
        taps: the learned taps (:meth:`FixedLagTaps.load`) or the identity
            (:meth:`FixedLagTaps.triangular`).
    """

    def __init__(self, taps: FixedLagTaps):
        if not isinstance(taps, FixedLagTaps):
            raise ConfigError(f"LearnedFixedLag needs FixedLagTaps, got {type(taps).__name__}")
        self.taps = taps
        self._w, self._u = taps.weights
        super().__init__(taps.config, taps.delay, "triangular")

    def _emit(self) -> LaggedValue:
        buf, d = self._buf, self.delay
        pos = len(buf) - self._pending
        idx, t, x, _, _, seg = buf[pos]
        full = (x is not None and pos - d >= 0 and pos + d < len(buf)
                and buf[pos - d][5] == seg and buf[pos + d][5] == seg)
        if not full:  # the triangular baseline (shrunken window / causal output)
            return super()._emit()
        self._pending -= 1
        out = self._w[0] * buf[pos - d][4] + self._u[0] * buf[pos - d][2]
        for i in range(1, 2 * d + 1):
            out = out + self._w[i] * buf[pos - d + i][4] + self._u[i] * buf[pos - d + i][2]
        return LaggedValue(idx, t, out)


def full_window_rows(present: np.ndarray, delay: int) -> np.ndarray:
    """Indices of the frames with ``delay`` frames of their own segment on each side (the rows
    where the learned taps apply); ``present``: (N,) bool, a False frame ends a segment."""
    present = np.asarray(present, bool)
    n = len(present)
    if n == 0:
        return np.zeros(0, int)
    run = np.zeros(n + 1, int)  # run[i + 1] = present frames ending at i
    for i in range(n):
        run[i + 1] = run[i] + 1 if present[i] else 0
    idx = np.arange(n)
    back = run[1:] - 1  # segment frames before i
    fwd = np.zeros(n, int)
    for i in range(n - 2, -1, -1):
        fwd[i] = fwd[i + 1] + 1 if present[i] and present[i + 1] else 0
    ok = present & (back >= delay) & (fwd >= delay)
    return idx[ok]


def learned_fixed_lag_from_forward(kps: np.ndarray, forward: np.ndarray, baseline: np.ndarray,
                                   taps: FixedLagTaps) -> np.ndarray:
    """The learned smoother over a whole (N, 17, 2) track (row i = frame i's estimate, emitted
    ``delay`` frames later online), given the causal One Euro track ``forward``
    (:func:`edgepose.video.tracks.one_euro_track`) and the triangular baseline
    ``baseline`` (:func:`edgepose.video.tracks.fixed_lag_from_forward`, same config and
    delay). Same output as pushing the track through :class:`LearnedFixedLag` and flushing."""
    kps = np.asarray(kps, dtype=np.float64)
    d = taps.delay
    w, u = taps.weights
    out = np.array(baseline, dtype=np.float64, copy=True)
    rows = full_window_rows(np.isfinite(kps).all(axis=(1, 2)), d)
    if rows.size:
        acc = w[0] * forward[rows - d] + u[0] * kps[rows - d]
        for i in range(1, 2 * d + 1):
            acc = acc + w[i] * forward[rows - d + i] + u[i] * kps[rows - d + i]
        out[rows] = acc
    return out


def learned_fixed_lag_track(kps: np.ndarray, fps: float, taps: FixedLagTaps,
                            scales: np.ndarray | None = None) -> np.ndarray:
    """:func:`learned_fixed_lag_from_forward` from the raw track (arguments as
    :func:`edgepose.video.tracks.one_euro_track`)."""
    from edgepose.video.tracks import fixed_lag_from_forward, one_euro_track
    from edgepose.video._temporal import person_scale

    kps = np.asarray(kps, dtype=np.float64)
    if scales is None:
        scales = np.array([person_scale(k[None]) if np.isfinite(k).all() else 1.0 for k in kps])
    fwd = one_euro_track(kps, fps, taps.config, scales)
    base = fixed_lag_from_forward(kps, fwd, fps, taps.config, taps.delay, scales, method="triangular")
    return learned_fixed_lag_from_forward(kps, fwd, base, taps)


#: Frame-rate thresholds :class:`RateSwitchedTaps` accepts (fps): below it the low-rate taps.
MIN_THRESHOLD_FPS, MAX_THRESHOLD_FPS = 1.0, 240.0
#: Time steps (between consecutive pushed frames) whose median sets the observed frame rate.
RATE_WINDOW = 15


@dataclass(frozen=True)
class RateSwitchedTaps:
    """Two tap sets chosen by the stream's frame rate: ``low`` below ``threshold_fps``, ``high``
    otherwise (same One Euro config and delay).

    JSON: :meth:`FixedLagTaps.to_dict` of ``high`` extended with ``"threshold_fps"`` and
    ``"low_rate": {"prior": [...], "raw": [...]}`` (so :meth:`FixedLagTaps.from_dict` of the
    same file reads the high-rate taps).
    """

    high: FixedLagTaps
    low: FixedLagTaps
    threshold_fps: float

    def __post_init__(self):
        for name in ("high", "low"):
            v = getattr(self, name)
            if not isinstance(v, FixedLagTaps):
                raise ConfigError(f"RateSwitchedTaps.{name} must be FixedLagTaps, got {type(v).__name__}")
        if self.high.delay != self.low.delay or self.high.config != self.low.config:
            raise ConfigError("RateSwitchedTaps.high and .low must share delay and One Euro config, got "
                             f"delay {self.high.delay} / {self.low.delay}, config {self.high.config} / {self.low.config}")
        t = self.threshold_fps
        if (isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t)
                or not MIN_THRESHOLD_FPS <= t <= MAX_THRESHOLD_FPS):
            raise ConfigError(f"RateSwitchedTaps.threshold_fps must be a number from {MIN_THRESHOLD_FPS:g} to "
                             f"{MAX_THRESHOLD_FPS:g} (fps), got {t!r}")

    @property
    def delay(self) -> int:
        return self.high.delay

    @property
    def config(self) -> OneEuroConfig:
        return self.high.config

    def for_fps(self, fps: float) -> FixedLagTaps:
        """The tap set used on a stream at ``fps`` frames per second."""
        return self.low if fps < self.threshold_fps else self.high

    def to_dict(self) -> dict:
        return {**self.high.to_dict(), "threshold_fps": float(self.threshold_fps),
                "low_rate": {"prior": list(self.low.prior), "raw": list(self.low.raw)}}

    @classmethod
    def from_dict(cls, d: dict) -> "RateSwitchedTaps":
        high = FixedLagTaps.from_dict(d)
        if "low_rate" not in d or "threshold_fps" not in d:
            raise ConfigError("not a rate-switched tap file: needs 'threshold_fps' and 'low_rate'")
        low = FixedLagTaps(high.config, high.delay, tuple(map(float, d["low_rate"]["prior"])),
                           tuple(map(float, d["low_rate"]["raw"])))
        return cls(high, low, d["threshold_fps"])

    def save(self, path: str | os.PathLike, **extra) -> None:
        Path(path).write_text(json.dumps({**self.to_dict(), **extra}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RateSwitchedTaps":
        return cls.from_dict(json.loads(Path(path).read_text()))


class RateSwitchedFixedLag(LearnedFixedLag):
    """:class:`LearnedFixedLag` with two tap sets (:class:`RateSwitchedTaps`).

    The frame rate is observed online: every :meth:`push` records the time step since the
    previous push (frames without a pose count too: they are camera frames; a timestamp not
    after the previous one is skipped), and before the frame is processed the taps are set from
    the median of the last :data:`RATE_WINDOW` steps: ``1000 / median_ms < threshold_fps`` uses
    the low-rate taps, otherwise (and before any step is known) the high-rate ones. Only
    timestamps of frames already pushed are read, so the delay stays ``delay`` frames; the choice
    in force when frame ``t`` arrives applies to the frame emitted then (``t - delay``) and to
    :meth:`flush`. At a constant frame rate this is :func:`learned_fixed_lag_from_forward` with
    ``taps.for_fps(fps)``.

    Args:
        taps: the two tap sets and the threshold.
    """

    def __init__(self, taps: RateSwitchedTaps):
        if not isinstance(taps, RateSwitchedTaps):
            raise ConfigError(f"RateSwitchedFixedLag needs RateSwitchedTaps, got {type(taps).__name__}")
        self.rate_taps = taps
        super().__init__(taps.high)

    def reset(self) -> None:
        super().reset()
        self._steps: collections.deque = collections.deque(maxlen=RATE_WINDOW)
        self._prev_t: float | None = None

    @property
    def observed_fps(self) -> float | None:
        """The frame rate from the median of the recent time steps (None before the second frame)."""
        return 1000.0 / float(np.median(self._steps)) if self._steps else None

    def push(self, x, timestamp_ms: float, *, scale: float = 1.0) -> list[LaggedValue]:
        t = float(timestamp_ms)
        if self._prev_t is not None and t > self._prev_t:
            self._steps.append(t - self._prev_t)
        self._prev_t = t
        fps = self.observed_fps
        self.taps = self.rate_taps.high if fps is None else self.rate_taps.for_fps(fps)
        self._w, self._u = self.taps.weights
        return super().push(x, timestamp_ms, scale=scale)
