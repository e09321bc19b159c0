"""Controllers: the keyframe interval (edge side) and the offload crop size / rate (cloud side).

Both act on what was measured (:mod:`edgepose.offload.timing`): the keyframe controller on
deadline misses, the offload-rate controller on how many server answers came back in time.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
from edgepose.errors import ConfigError


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
            raise ConfigError(f"KeyframeConfig.k_min must be an int >= 1, got {self.k_min!r}")
        if not isinstance(self.k_max, int) or self.k_max < self.k_min:
            raise ConfigError(f"KeyframeConfig.k_max must be an int >= k_min ({self.k_min}), got {self.k_max!r}")
        if not 0.0 < self.target_within < 1.0:
            raise ConfigError(f"KeyframeConfig.target_within must be in (0, 1), got {self.target_within!r}")
        if not isinstance(self.min_events, int) or self.min_events < 1:
            raise ConfigError(f"KeyframeConfig.min_events must be an int >= 1, got {self.min_events!r}")
        if not isinstance(self.window, int) or self.window < 10:
            raise ConfigError(f"KeyframeConfig.window must be an int >= 10, got {self.window!r}")


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


_OUTCOMES = ("on_time", "late", "lost", "unfit")


@dataclass
class OffloadControlConfig:
    """Options of :class:`OffloadRateController`.

    Attributes:
        crop_sizes: the ladder of crop sides sent to the server, largest first. 256 = Thunder's
            input (no resampling on the server); a smaller crop is a smaller JPEG, which matters
            only on a slow uplink (LTE 5 Mbit/s: 16 KB = 26 ms, 8 KB = 13 ms).
        min_transfer_share: step the crop down only while the upload is at least this share of
            the predicted answer time (on fast Wi-Fi it is ~2 % and a smaller crop only costs
            accuracy).
        min_scale: lowest offload-rate scale; offloads continue at this fraction of the target
            rate on a link whose answers are late, to re-seed the tracker and re-measure the link.
        low, high: on-time share of the recent offload outcomes below which the controller
            backs off (smaller crop first, then a lower rate) and above which it recovers.
        window: recent outcomes the share is taken over.
        cooldown: outcomes between two changes (lets the share follow the change).
        probe_every: when an answer is predicted not to fit, send every ``probe_every``-th such
            request anyway (it can only re-seed the tracker and refresh the link estimate; its
            frame is not held for it); 0 never sends an unfit request.
    """

    crop_sizes: tuple[int, ...] = (256, 192, 160)
    min_transfer_share: float = 0.15
    min_scale: float = 0.25
    low: float = 0.3
    high: float = 0.6
    window: int = 12
    cooldown: int = 6
    probe_every: int = 2

    def __post_init__(self):
        sizes = tuple(self.crop_sizes)
        if not sizes or any(not isinstance(v, int) or not 32 <= v <= 1024 for v in sizes) or \
                list(sizes) != sorted(sizes, reverse=True):
            raise ConfigError("OffloadControlConfig.crop_sizes must be ints in [32, 1024], largest first, got "
                             f"{self.crop_sizes!r}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ConfigError(f"OffloadControlConfig.min_scale must be in (0, 1], got {self.min_scale!r}")
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ConfigError(f"OffloadControlConfig.low ({self.low!r}) must be < high ({self.high!r}), both in [0, 1]")
        for f in ("window", "cooldown"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                raise ConfigError(f"OffloadControlConfig.{f} must be an int >= 1, got {getattr(self, f)!r}")
        if not isinstance(self.probe_every, int) or self.probe_every < 0:
            raise ConfigError(f"OffloadControlConfig.probe_every must be an int >= 0, got {self.probe_every!r}")


class OffloadRateController:
    """Adapts the offload crop size and rate to how many answers come back in time.

    Every offload candidate ends as one outcome: ``on_time`` (the answer replaced the frame's
    pose), ``late`` (it came after the frame was delivered), ``lost`` (no answer: loss, error,
    busy) or ``unfit`` (not sent: predicted to arrive too late). When the on-time share of the
    last ``window`` outcomes falls below ``low``, the controller first steps the crop down the
    ladder (while the upload is a sizeable part of the answer time) and then halves the rate
    scale down to ``min_scale``; above ``high`` it undoes those steps in reverse order.

    The edge model's own input size is not adapted here: the shipped MoveNet cards have fixed
    192x192 / 256x256 input tensors; the keyframe interval (:class:`KeyframeController`) is the
    edge-side knob.

    Args:
        config: :class:`OffloadControlConfig`.
    """

    def __init__(self, config: OffloadControlConfig | None = None):
        self.config = config or OffloadControlConfig()
        self.crop_index = 0
        self.rate_scale = 1.0
        self.counts = {k: 0 for k in _OUTCOMES}
        self.changes: list[tuple[int, int, float]] = []  # (outcome number, crop size, rate scale)
        self._recent: collections.deque[bool] = collections.deque(maxlen=self.config.window)
        self._since_change = 0
        self._probes = 0
        self._n = 0

    @property
    def crop_size(self) -> int:
        return self.config.crop_sizes[self.crop_index]

    @property
    def on_time_share(self) -> float:
        return float(np.mean(self._recent)) if self._recent else 1.0

    def probe(self) -> bool:
        """For a request predicted not to fit: send it anyway? (every ``probe_every``-th one).

        Call once per unfit candidate; record ``unfit`` for those not sent.
        """
        every = self.config.probe_every
        self._probes += 1
        return every > 0 and self._probes % every == 1 % every

    def record(self, outcome: str, *, transfer_share: float = 0.0) -> None:
        """Record one outcome; ``transfer_share``: upload time / predicted answer time."""
        if outcome not in _OUTCOMES:
            raise ConfigError(f"outcome {outcome!r} is not one of {', '.join(_OUTCOMES)}")
        c = self.config
        self._n += 1
        self.counts[outcome] += 1
        self._recent.append(outcome == "on_time")
        self._since_change += 1
        if self._since_change < c.cooldown or len(self._recent) < min(c.window, c.cooldown):
            return
        share = self.on_time_share
        last = len(c.crop_sizes) - 1
        if share < c.low:
            if self.crop_index < last and transfer_share >= c.min_transfer_share:
                self._set(self.crop_index + 1, self.rate_scale)
            elif self.rate_scale > c.min_scale:
                self._set(self.crop_index, max(c.min_scale, self.rate_scale / 2.0))
        elif share > c.high:
            if self.rate_scale < 1.0:
                self._set(self.crop_index, min(1.0, self.rate_scale * 2.0))
            elif self.crop_index > 0:
                self._set(self.crop_index - 1, self.rate_scale)

    def _set(self, crop_index: int, scale: float) -> None:
        self.crop_index, self.rate_scale = crop_index, scale
        self._since_change = 0
        self._recent.clear()
        self.changes.append((self._n, self.crop_size, scale))

    def summary(self) -> dict:
        return {"crop_size": self.crop_size, "rate_scale": self.rate_scale, "outcomes": dict(self.counts),
                "on_time_share": round(self.on_time_share, 3), "changes": list(self.changes)}


__all__ = ["KeyframeConfig", "KeyframeController", "OffloadControlConfig", "OffloadRateController"]
