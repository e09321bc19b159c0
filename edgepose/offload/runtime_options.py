"""Options of :class:`~edgepose.offload.runtime.CloudEdgeRuntime`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgepose.offload.controllers import KeyframeConfig, OffloadControlConfig
from edgepose.offload.policy import PolicyConfig
from edgepose.errors import ConfigError

_PROPAGATE = ("hold", "velocity")


@dataclass
class RuntimeOptions:
    """Options of :class:`CloudEdgeRuntime`.

    Attributes:
        budget_ms: per-frame latency budget, arrival to result. 66.7 = the rpi4 profile's
            15 fps frame budget; pass ``profile.frame_budget.frame_ms`` for another device.
        result_delay_ms: the declared result delay: how long after its arrival an offloaded
            frame's result may be held for the cloud answer. None = as long as the budget allows
            (``budget_ms - margin_ms - p99 of the per-frame processing time``, re-measured as it
            runs); a number is further capped by that; 0 = never hold (answers only re-seed).
        jpeg_quality: JPEG quality of the crop; 90 keeps a 256 px crop near 10-16 KB.
        late_reseed_ms: a late answer for a frame at most this old (media time) still
            re-seeds the tracker. 0 (off): on the seven training clips of
            docs/research-notes.md O1, re-seeding from answers 2 frames late
            left Lightning int8 below no offloading at all (88.0 vs 88.3 % of the teacher's
            PCK; on-time answers: 88.9) -- the stale pose pulls the crop back (vtest: -4 points).
        propagate: between keyframes, ``hold`` repeats the last pose, ``velocity`` extrapolates
            it from the last two keyframes (damped by half).
        early_offload: while the policy is in a hard stretch (its state after the previous
            keyframe), send the keyframe's crop (the tracker's ROI for it) before the edge model
            runs, so the answer has the edge time more to arrive in; a keyframe that starts a hard
            stretch is sent after its edge pose is scored. False: always after (crop from the
            frame's own edge pose). Timing-free on training clips (docs/research-notes.md O1,
            ``send`` column) the early crop did not cost accuracy.
        collect_interval_ms: label-only collection samples (0 = off, the default): with a client,
            at most one keyframe crop per this many ms of media time is sent to the server only to be
            answered, so that a collecting server (``edgepose serve --collect DIR``) keeps enough of
            the scene for ``edgepose adapt --from-collection DIR`` (offloads alone are a few % of the
            frames). A sample goes out only on a keyframe that was not offloaded, with no request of
            the runtime in flight (else it is counted ``skipped_busy`` and tried on the next
            keyframe); its answer is never used for a frame, it takes no offload token and is not
            an offload in any count (``summary()["collection_samples"]``). e.g. 500: two per second.
        keyframes: :class:`KeyframeConfig` of the keyframe-interval controller.
        policy: :class:`PolicyConfig` of the offload policy.
        control: :class:`OffloadControlConfig` of the offload crop-size / rate controller.
    """

    budget_ms: float = 1000.0 / 15.0
    result_delay_ms: float | None = None
    jpeg_quality: int = 90
    late_reseed_ms: float = 0.0
    propagate: str = "hold"
    early_offload: bool = True
    collect_interval_ms: float = 0.0
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    control: OffloadControlConfig = field(default_factory=OffloadControlConfig)

    def __post_init__(self):
        if not self.budget_ms > 0:
            raise ConfigError(f"RuntimeOptions.budget_ms must be > 0, got {self.budget_ms!r}")
        if self.result_delay_ms is not None and not 0 <= self.result_delay_ms < self.budget_ms:
            raise ConfigError(f"RuntimeOptions.result_delay_ms must be None or in [0, budget_ms={self.budget_ms:g}), "
                             f"got {self.result_delay_ms!r}; a result held longer than the budget misses it")
        if not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"RuntimeOptions.jpeg_quality must be an int in [1, 100], got {self.jpeg_quality!r}")
        if not self.late_reseed_ms >= 0:
            raise ConfigError(f"RuntimeOptions.late_reseed_ms must be >= 0, got {self.late_reseed_ms!r}")
        if self.propagate not in _PROPAGATE:
            raise ConfigError(f"RuntimeOptions.propagate {self.propagate!r} is not one of {', '.join(_PROPAGATE)}")
        v = self.collect_interval_ms
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"RuntimeOptions.collect_interval_ms must be a finite number >= 0 (0 = off; e.g. 500 = "
                             f"at most one collection sample per 500 ms of media time), got {v!r}")
