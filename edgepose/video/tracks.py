"""One Euro over whole recorded tracks: what the temporal evaluation, the One Euro tuning
(``edgepose.compression.temporal.baselines``) and the tests replay the online filters with.

A track is ``(N, 17, 2)`` pixels, a nan row where there was no pose (the filter restarts after
it); frame i's time is ``i * 1000 / fps`` ms. :func:`one_euro_track` is
:class:`~edgepose.video.one_euro.OneEuroFilter` frame by frame; :func:`fixed_lag_one_euro_track`
/ :func:`fixed_lag_from_forward` are :class:`~edgepose.video.one_euro.FixedLagOneEuro`,
vectorised over the frames; :func:`roi_sides` gives the person size the estimator passed.
"""

from __future__ import annotations

import math

import numpy as np

from edgepose.video._temporal import person_scale
from edgepose.video.one_euro import OneEuroConfig, OneEuroFilter


def roi_sides(kps: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(T,) the side of the crop the estimator ran on in each frame of a video-mode track: the
    crop from the previous frame's pose (:func:`~edgepose.models.roi.roi_from_keypoints`),
    the full frame where there was none. Smoothing does not change the crops, so the estimator's
    One Euro output is ``one_euro_track(kps, fps, cfg, roi_sides(...))``."""
    from edgepose.models.roi import roi_from_keypoints

    w, h = image_size
    out = np.full(len(kps), float(max(w, h)))
    for t in range(1, len(kps)):
        if np.isfinite(kps[t - 1]).all():
            roi = roi_from_keypoints(kps[t - 1], scores[t - 1], image_size)
            if roi is not None:
                out[t] = max(roi.width, roi.height)
    return out


def one_euro_track(kps: np.ndarray, fps: float, cfg: OneEuroConfig,
                   scales: np.ndarray | None = None) -> np.ndarray:
    """One Euro over a (N, 17, 2) track (nan rows = no pose: the filter restarts after them).

    Args:
        kps: (N, 17, 2) px.
        fps: frame rate (timestamps are ``i * 1000 / fps`` ms).
        cfg: the filter's parameters.
        scales: (N,) the person size passed to the filter each frame (the estimator passes the
            ROI side: :func:`roi_sides`); None: the pose's bounding-box side in that frame.
    """
    out = np.full(kps.shape, np.nan)
    f = OneEuroFilter(cfg)
    for i, k in enumerate(kps):
        if not np.isfinite(k).all():
            f.reset()
            continue
        s = float(scales[i]) if scales is not None else person_scale(k[None])
        out[i] = f(k, i * 1000.0 / fps, scale=s)
    return out


def fixed_lag_one_euro_track(kps: np.ndarray, fps: float, cfg: OneEuroConfig, delay: int,
                             scales: np.ndarray | None = None, *,
                             method: str = "forward-backward") -> np.ndarray:
    """:class:`~edgepose.video.one_euro.FixedLagOneEuro` over a (N, 17, 2) track, aligned to
    the input: row i is frame i's estimate (emitted ``delay`` frames later online). Arguments
    as :func:`one_euro_track`; nan rows = no pose (the filter restarts after them).

    Vectorised over the frames (the tuning runs it on every grid point); the same result as
    pushing the track through :class:`~edgepose.video.one_euro.FixedLagOneEuro` and flushing.
    """
    kps = np.asarray(kps, dtype=np.float64)
    if scales is None:
        scales = np.array([person_scale(k[None]) if np.isfinite(k).all() else 1.0 for k in kps])
    return fixed_lag_from_forward(kps, one_euro_track(kps, fps, cfg, scales), fps, cfg, delay,
                                  scales, method=method)


def fixed_lag_from_forward(kps: np.ndarray, forward: np.ndarray, fps: float, cfg: OneEuroConfig,
                           delay: int, scales: np.ndarray, *,
                           method: str = "forward-backward") -> np.ndarray:
    """:func:`fixed_lag_one_euro_track` given the causal filter's track ``forward``
    (``one_euro_track(kps, fps, cfg, scales)``), so several delays and methods can share it."""
    from edgepose.video.one_euro import check_fixed_lag, triangular_weights

    d = check_fixed_lag(delay, method)
    kps = np.asarray(kps, dtype=np.float64)
    n = len(kps)
    present = np.isfinite(kps).all(axis=(1, 2))
    out = np.array(forward, dtype=np.float64, copy=True)
    out[~present] = np.nan
    if d == 0 or n == 0:
        return out
    idx = np.arange(n)
    start = present & np.r_[True, ~present[:-1]]
    seg_first = np.maximum.accumulate(np.where(start, idx, 0))
    end = present & np.r_[~present[1:], True]
    seg_last = np.minimum.accumulate(np.where(end, idx, n)[::-1])[::-1]
    rows = np.nonzero(present)[0]
    ahead = np.minimum(rows + d, seg_last[rows]) - rows  # newer frames of the segment, <= d
    ts = idx * 1000.0 / fps
    if method == "forward-backward":
        # the backward pass of every frame at once, arithmetic as OneEuroFilter.__call__
        j = rows + ahead
        xh, dxh = kps[j].copy(), np.zeros_like(kps[j])
        for step in range(1, d + 1):
            act = ahead >= step
            if not act.any():
                break
            m = j[act] - step
            dt = ((-ts[m]) - (-ts[m + 1])) * 1e-3
            dt = dt[:, None, None]
            r_d = 2.0 * math.pi * cfg.d_cutoff * dt
            a_d = r_d / (1.0 + r_d)
            diff = kps[m] - xh[act]
            dx_hat = diff * (a_d / dt)
            dx_hat += (1.0 - a_d) * dxh[act]
            r = np.abs(dx_hat)
            r *= 2.0 * math.pi * dt * cfg.beta / scales[m][:, None, None]
            r += 2.0 * math.pi * dt * cfg.min_cutoff
            diff *= r / (1.0 + r)
            diff += xh[act]
            xh[act], dxh[act] = diff, dx_hat
        sel = ahead > 0
        out[rows[sel]] = 0.5 * (out[rows[sel]] + xh[sel])
        return out
    h = np.minimum(np.minimum(ahead, rows - seg_first[rows]), d)
    f = out.copy()
    for hv in range(1, d + 1):
        r = rows[h == hv]
        if r.size:
            w = triangular_weights(hv)
            acc = w[0] * f[r - hv]
            for i in range(1, 2 * hv + 1):
                acc = acc + w[i] * f[r - hv + i]
            out[r] = acc
    return out
