"""Offload policy: a hard-frame score with hysteresis, and a fits-the-budget check.

The score (0 easy .. 1 hard) mixes low keypoint confidence (or large RLE sigma when the model
gives one), few visible keypoints, and fast motion; a lost pose scores 1. Offloading starts when
the score rises above ``enter`` and stops when it falls below ``leave`` (two thresholds, so a
score hovering near one threshold does not flap). A request is sent only if the smoothed
network time + the server's p90 fits the time left in the frame's budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgepose.offload.budget import LatencyStats
from edgepose.offload.netem import LinkSpec


@dataclass
class PolicyConfig:
    """Options of :class:`OffloadPolicy`.

    Attributes:
        enter: start offloading when the hard-frame score exceeds this.
        leave: stop offloading when it falls below this (< enter: hysteresis).
        visible_score: a keypoint counts as visible above this (MoveNet's tfjs threshold 0.3).
        confident_mean: mean keypoint score treated as fully confident (MoveNet Lightning's
            typical mean on a clear, whole person).
        motion_scale: keypoint motion per frame, as a fraction of the pose box's longer side,
            that counts as fully fast (0.1 = the person crosses their own size in 10 frames).
        sigma_scale: mean RLE sigma, as a fraction of the box's longer side, counted fully hard.
        w_confidence, w_visible, w_motion: weights of the three terms (they are normalised).
        margin_ms: time kept back at the deadline for finishing the frame after the answer.
        server_prior_ms: server time assumed before any answer has been measured (optimistic,
            so the first offloads happen and measure it).
    """

    enter: float = 0.5
    leave: float = 0.3
    visible_score: float = 0.3
    confident_mean: float = 0.6
    motion_scale: float = 0.1
    sigma_scale: float = 0.1
    w_confidence: float = 0.5
    w_visible: float = 0.3
    w_motion: float = 0.2
    margin_ms: float = 3.0
    server_prior_ms: float = 10.0

    def __post_init__(self):
        if not 0.0 <= self.leave < self.enter <= 1.0:
            raise ValueError(f"PolicyConfig.leave ({self.leave!r}) must be < enter ({self.enter!r}), both in [0, 1]")
        for f in ("confident_mean", "motion_scale", "sigma_scale"):
            if not getattr(self, f) > 0:
                raise ValueError(f"PolicyConfig.{f} must be > 0, got {getattr(self, f)!r}")
        if min(self.w_confidence, self.w_visible, self.w_motion) < 0 or \
                self.w_confidence + self.w_visible + self.w_motion <= 0:
            raise ValueError("PolicyConfig weights w_confidence, w_visible, w_motion must be >= 0 with a positive sum")


def hard_frame_score(scores: np.ndarray | None, *, box_size: float = 1.0, motion_px: float = 0.0,
                     sigma: np.ndarray | None = None, config: PolicyConfig | None = None) -> float:
    """How hard a frame is for the edge model, in [0, 1].

    Args:
        scores: (17,) keypoint scores of the edge pose; None when the pose is lost (score 1).
        box_size: the pose box's longer side in px (normalises motion and sigma).
        motion_px: median keypoint displacement since the previous frame, in px.
        sigma: optional (17,) RLE uncertainty in px; replaces the confidence term when given.
        config: :class:`PolicyConfig`.
    """
    c = config or PolicyConfig()
    if scores is None or len(scores) == 0:
        return 1.0
    scores = np.asarray(scores, dtype=np.float64)
    size = max(float(box_size), 1.0)
    if sigma is not None:
        conf = float(np.clip(np.mean(sigma) / size / c.sigma_scale, 0.0, 1.0))
    else:
        conf = float(np.clip(1.0 - scores.mean() / c.confident_mean, 0.0, 1.0))
    visible = 1.0 - float((scores > c.visible_score).sum()) / len(scores)
    motion = float(np.clip(motion_px / size / c.motion_scale, 0.0, 1.0))
    wsum = c.w_confidence + c.w_visible + c.w_motion
    return (c.w_confidence * conf + c.w_visible * visible + c.w_motion * motion) / wsum


class NetworkEstimate:
    """Smoothed RTT, uplink and server time, seeded from the link's nominal figures.

    The uplink rate is taken from the link (profile) and not re-estimated: crops are all about
    the same size, so the smoothed RTT (network time minus the transfer at that rate) absorbs
    any error in it.
    """

    def __init__(self, link: LinkSpec, *, server_prior_ms: float = 10.0):
        self.link = link
        self.rtt = LatencyStats(alpha=0.2)
        self.server = LatencyStats()
        self.server_prior_ms = server_prior_ms

    def observe(self, network_ms: float, up_bytes: int, server_ms: float) -> None:
        self.rtt.add(max(0.0, network_ms - self.link.transfer_ms(up_bytes)))
        self.server.add(server_ms)

    def predict_ms(self, up_bytes: int) -> float:
        """Expected answer time for ``up_bytes``: smoothed RTT + transfer + server p90."""
        rtt = self.rtt.ewma if self.rtt.ewma is not None else self.link.rtt_ms + self.link.jitter_ms
        server = self.server.percentile(90, default=self.server_prior_ms)
        return rtt + self.link.transfer_ms(up_bytes) + self.link.transfer_ms(300, up=False) + server


class OffloadPolicy:
    """Hysteresis on the hard-frame score plus the fits-the-budget check.

    Args:
        config: :class:`PolicyConfig`.
    """

    def __init__(self, config: PolicyConfig | None = None):
        self.config = config or PolicyConfig()
        self.hard = False
        self.score = 0.0
        self.skipped_no_fit = 0
        self._prev_kps: np.ndarray | None = None

    def update(self, keypoints: np.ndarray | None, scores: np.ndarray | None, *,
               box_size: float = 1.0, sigma: np.ndarray | None = None) -> bool:
        """Score the edge pose of this frame; returns the (hysteresis) hard state."""
        motion = 0.0
        if keypoints is not None and self._prev_kps is not None:
            motion = float(np.median(np.linalg.norm(keypoints - self._prev_kps, axis=1)))
        self._prev_kps = None if keypoints is None else np.asarray(keypoints, dtype=np.float64)
        self.score = hard_frame_score(scores if keypoints is not None else None, box_size=box_size,
                                      motion_px=motion, sigma=sigma, config=self.config)
        if self.hard and self.score < self.config.leave:
            self.hard = False
        elif not self.hard and self.score > self.config.enter:
            self.hard = True
        return self.hard

    def fits(self, remaining_ms: float, predicted_ms: float) -> bool:
        """Whether an answer predicted in ``predicted_ms`` arrives within ``remaining_ms``."""
        ok = predicted_ms + self.config.margin_ms <= remaining_ms
        if not ok:
            self.skipped_no_fit += 1
        return ok and math.isfinite(predicted_ms)
