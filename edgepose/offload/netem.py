"""Network emulation in the client transport: bandwidth, RTT, jitter, loss; seeded, deterministic.

The emulator does not touch sockets: the offload client asks it, per request, how long the
uplink and downlink legs take (serialisation at the link rate + half the RTT + jitter) or
whether the message is lost, and sleeps accordingly around the real HTTP exchange. The same
seed and the same sequence of message sizes give the same delays and losses.

Built-in presets (a device profile's ``networks`` give per-device links:
:func:`link_from_profile`):

* ``wifi``: 11 Mbit/s up (the docs/design.md measurement), 40 down, 8 ms RTT, 2 ms jitter, 0.5 % loss.
* ``lte``: 5 Mbit/s up, 20 down, 50 ms RTT, 10 ms jitter, 1 % loss (a typical suburban cell).
* ``5g``: 50 Mbit/s up, 200 down, 15 ms RTT, 4 ms jitter, 0.2 % loss.
* ``loopback``: no added delay (the real loopback socket only).
* ``none``: no link at all (no server; the runtime stays on the edge).
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass

from edgepose.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class LinkSpec:
    """One emulated network link.

    Attributes:
        name: preset name or a label.
        uplink_mbps: client -> server rate in Mbit/s (0 with ``rtt_ms == 0``: no shaping).
        downlink_mbps: server -> client rate in Mbit/s.
        rtt_ms: round-trip propagation time in ms (split evenly between the legs).
        jitter_ms: standard deviation of the round-trip delay in ms (each leg draws a gaussian
            of std ``jitter_ms / sqrt(2)``, clipped at 0).
        loss: probability that an exchange is lost (each leg loses ``1 - sqrt(1 - loss)``).
        available: False for the ``none`` link (no server reachable).
    """

    name: str = "custom"
    uplink_mbps: float = 0.0
    downlink_mbps: float = 0.0
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    available: bool = True

    def __post_init__(self):
        for f in ("uplink_mbps", "downlink_mbps", "rtt_ms", "jitter_ms"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"LinkSpec.{f} must be a number >= 0, got {v!r}")
        if not 0.0 <= self.loss <= 1.0:
            raise ConfigError(f"LinkSpec.loss must be in [0, 1], got {self.loss!r}")

    def transfer_ms(self, nbytes: int, *, up: bool = True) -> float:
        """Serialisation time of ``nbytes`` on one leg, in ms (0 when the leg is unshaped)."""
        rate = self.uplink_mbps if up else self.downlink_mbps
        return nbytes * 8.0 / (rate * 1e3) if rate > 0 else 0.0

    def expected_ms(self, up_bytes: int, down_bytes: int = 256) -> float:
        """Expected network time of one exchange (no jitter, no loss)."""
        return self.rtt_ms + self.transfer_ms(up_bytes) + self.transfer_ms(down_bytes, up=False)


PRESETS: dict[str, LinkSpec] = {
    "wifi": LinkSpec("wifi", 11.0, 40.0, 8.0, 2.0, 0.005),
    "lte": LinkSpec("lte", 5.0, 20.0, 50.0, 10.0, 0.01),
    "5g": LinkSpec("5g", 50.0, 200.0, 15.0, 4.0, 0.002),
    "loopback": LinkSpec("loopback"),
    "none": LinkSpec("none", available=False),
}


def get_link(name: str, profile=None) -> LinkSpec:
    """A link by name: from ``profile`` (a DeviceProfile or profile name) when given, else a preset."""
    if profile is not None and name not in ("none", "loopback"):
        return link_from_profile(profile, name)
    if name not in PRESETS:
        raise unknown_name("network link", name, PRESETS, "Or build a LinkSpec(uplink_mbps=..., rtt_ms=...)")
    return PRESETS[name]


def link_from_profile(profile, name: str) -> LinkSpec:
    """The link ``name`` of a device profile (``edgepose.profiles.DeviceProfile`` or its name)."""
    if isinstance(profile, str):
        from edgepose.profiles import load_profile

        profile = load_profile(profile)
    links = {n.name: n for n in profile.networks}
    if name not in links:
        raise unknown_name(f"network link of device profile {profile.name!r}", name, [*links, "none", "loopback"])
    n = links[name]
    return LinkSpec(name, float(n.uplink_mbps), float(n.downlink_mbps), float(n.rtt_ms), float(n.jitter_ms),
                    float(n.loss_pct) / 100.0)


@dataclass
class LegDelay:
    """The emulated outcome of one leg: ``delay_ms`` or ``lost``."""

    delay_ms: float
    lost: bool


class NetworkEmulator:
    """Draws per-message delays and losses for a :class:`LinkSpec` from a seeded generator.

    Args:
        link: the link to emulate.
        seed: random seed; the sequence of draws depends only on it and the calls made.
    """

    def __init__(self, link: LinkSpec, *, seed: int = 0):
        self.link = link
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._cut = False
        self.sent = 0
        self.lost = 0

    def cut(self, down: bool = True) -> None:
        """Cut the link (every message lost) or restore it."""
        self._cut = down

    @property
    def is_cut(self) -> bool:
        return self._cut or not self.link.available

    def leg(self, nbytes: int, *, up: bool) -> LegDelay:
        """Delay (ms) of one message of ``nbytes`` on the uplink or downlink, or loss."""
        with self._lock:
            self.sent += 1
            lk = self.link
            jitter = max(0.0, self._rng.gauss(0.0, lk.jitter_ms / math.sqrt(2.0))) if lk.jitter_ms > 0 else 0.0
            lost = self._rng.random() < 1.0 - math.sqrt(1.0 - lk.loss)
            if self.is_cut or lost:
                self.lost += 1
                return LegDelay(0.0, True)
            return LegDelay(lk.rtt_ms / 2.0 + jitter + lk.transfer_ms(nbytes, up=up), False)
