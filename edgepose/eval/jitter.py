"""Temporal quality metrics of keypoint tracks: jitter, position error and PCK per frame.

Pure numpy. A track is ``(T, J, D)`` (frames, joints, coordinates, usually ``(T, 17, 2)``
pixels); missing entries are ``nan``. Every metric skips what it cannot compute (a frame
where the prediction or the reference is missing) instead of guessing.

* :func:`acceleration` - second differences ``x[t+1] - 2 x[t] + x[t-1]`` (px / frame^2).
* :func:`mean_acceleration_error` - SmoothNet's "Accel": mean over frames and joints of
  ``|| acc(pred) - acc(ref) ||``; with no reference, the mean acceleration magnitude.
* :func:`mean_position_error` - mean per-joint Euclidean distance (px) to the reference.
* :func:`high_frequency_energy` - spectral energy above a cut-off (Hz), in px^2 (mean power
  per coordinate), so a sinusoid of amplitude A above the cut-off reads ``A**2 / 2``.
* :func:`pck_track` - PCK@alpha x torso per frame, the torso taken from the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepose.types import SHARED13, Keypoint
from edgepose.errors import ConfigError

_LS, _RS = int(Keypoint.LEFT_SHOULDER), int(Keypoint.RIGHT_SHOULDER)
_LH, _RH = int(Keypoint.LEFT_HIP), int(Keypoint.RIGHT_HIP)


def _as_track(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ConfigError(f"{name} must be a (T, J, D) track, got shape {a.shape}")
    return a


def _pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    p = _as_track(pred, "pred")
    r = _as_track(ref, "ref")
    if p.shape != r.shape:
        raise ConfigError(f"pred {p.shape} and ref {r.shape} must have the same shape")
    return p, r


def acceleration(track) -> np.ndarray:
    """Second differences of ``track`` (T, J, D): (T - 2, J, D), nan where a frame is missing."""
    x = _as_track(track, "track")
    if len(x) < 3:
        return np.zeros((0,) + x.shape[1:])
    return x[2:] - 2.0 * x[1:-1] + x[:-2]


def _mean_norm(d: np.ndarray) -> float:
    n = np.linalg.norm(d, axis=-1)
    ok = np.isfinite(n)
    return float(n[ok].mean()) if ok.any() else float("nan")


def mean_acceleration_error(pred, ref=None) -> float:
    """Mean ``|| acc(pred) - acc(ref) ||`` over frames 1..T-2 and joints (px / frame^2).

    Args:
        pred: (T, J, D) predicted track.
        ref: (T, J, D) reference track; None measures the acceleration of ``pred`` itself.

    Returns:
        The mean over every (frame, joint) whose three frames are present in both tracks;
        nan when there is none.
    """
    if ref is None:
        return _mean_norm(acceleration(pred))
    p, r = _pair(pred, ref)
    return _mean_norm(acceleration(p) - acceleration(r))


def mean_position_error(pred, ref) -> float:
    """Mean per-joint Euclidean distance between ``pred`` and ``ref`` (px), over present entries."""
    p, r = _pair(pred, ref)
    return _mean_norm(p - r)


def high_frequency_energy(track, fps: float, cutoff_hz: float) -> float:
    """Mean spectral power of each coordinate's signal above ``cutoff_hz`` (px^2).

    Each (joint, coordinate) signal has its mean removed and is transformed with a real FFT;
    the one-sided power above the cut-off is summed, normalised so that by Parseval the total
    equals the signal's variance (a sinusoid of amplitude A covering whole periods gives
    ``A**2 / 2``), and averaged over signals. Signals with a missing frame are skipped (pass a
    gap-free span). Pass ``pred - ref`` to measure the high-frequency part of the error.

    Args:
        track: (T, J, D) track.
        fps: frames per second of the track.
        cutoff_hz: frequencies strictly above this count; must be below Nyquist (fps / 2).
    """
    if fps <= 0:
        raise ConfigError(f"fps must be > 0, got {fps!r}")
    if not 0 < cutoff_hz < fps / 2:
        raise ConfigError(f"cutoff_hz must be in (0, fps/2 = {fps / 2:g}), got {cutoff_hz!r}")
    x = _as_track(track, "track")
    t = len(x)
    if t < 4:
        return float("nan")
    sig = x.reshape(t, -1)
    sig = sig[:, np.isfinite(sig).all(axis=0)]
    if sig.shape[1] == 0:
        return float("nan")
    sig = sig - sig.mean(axis=0)
    spec = np.abs(np.fft.rfft(sig, axis=0)) ** 2
    freqs = np.fft.rfftfreq(t, d=1.0 / fps)
    weight = np.full(len(freqs), 2.0)
    weight[0] = 1.0
    if t % 2 == 0:
        weight[-1] = 1.0  # the Nyquist bin appears once
    power = weight[:, None] * spec / float(t * t)
    return float(power[freqs > cutoff_hz].sum(axis=0).mean())


def default_cutoff_hz(fps: float) -> float:
    """The jitter cut-off used by the reports: 5 Hz, or 0.4 x fps for slow clips (< 12.5 fps)."""
    return float(min(5.0, 0.4 * fps))


def torso_sizes(ref) -> np.ndarray:
    """(T,) torso size per frame of a COCO-17 reference: mean of |l_sho - r_hip|, |r_sho - l_hip|."""
    r = _as_track(ref, "ref")
    d1 = np.linalg.norm(r[:, _LS] - r[:, _RH], axis=-1)
    d2 = np.linalg.norm(r[:, _RS] - r[:, _LH], axis=-1)
    both = np.stack([d1, d2], axis=1)
    out = np.full(len(r), np.nan)
    ok = np.isfinite(both).any(axis=1)
    out[ok] = np.nanmean(both[ok], axis=1)
    return out


def pck_track(pred, ref, alpha: float = 0.2, *, joints: tuple[int, ...] = SHARED13) -> float:
    """PCK@``alpha`` x torso (%) of a COCO-17 track against a reference track.

    Pooled over frames and ``joints`` present in the reference; a missing prediction counts as
    a miss. Frames whose reference has no torso are left out.
    """
    p, r = _pair(pred, ref)
    j = list(joints)
    torso = torso_sizes(r)
    ok_frame = np.isfinite(torso) & (torso > 0)
    labelled = np.isfinite(r[:, j]).all(axis=-1) & ok_frame[:, None]
    err = np.linalg.norm(p[:, j] - r[:, j], axis=-1)
    hit = labelled & np.isfinite(err) & (err < alpha * np.where(ok_frame, torso, 0.0)[:, None])
    n = int(labelled.sum())
    return 100.0 * int(hit.sum()) / n if n else float("nan")


@dataclass(frozen=True)
class TemporalMetrics:
    """The temporal metrics of one track against one reference.

    Attributes:
        accel_error: mean acceleration error (px / frame^2).
        position_error: mean per-joint position error (px).
        hf_energy: spectral power of the track above ``cutoff_hz`` (px^2).
        hf_energy_error: spectral power of ``pred - ref`` above ``cutoff_hz`` (px^2).
        pck: PCK@0.2 x torso (%), torso from the reference.
        pck05: PCK@0.05 x torso (%), a tighter threshold that moves with small errors.
        cutoff_hz: the cut-off used.
    """

    accel_error: float
    position_error: float
    hf_energy: float
    hf_energy_error: float
    pck: float
    pck05: float
    cutoff_hz: float

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 4) if np.isfinite(v) else None) for k, v in self.__dict__.items()}


def temporal_metrics(pred, ref, fps: float, *, cutoff_hz: float | None = None,
                     joints: tuple[int, ...] = SHARED13) -> TemporalMetrics:
    """All the metrics of :class:`TemporalMetrics` on ``joints`` of two COCO-17 tracks.

    Args:
        pred: (T, 17, 2) track; nan where missing.
        ref: (T, 17, 2) reference; nan where missing.
        fps: frame rate, for the spectral metric.
        cutoff_hz: spectral cut-off; default :func:`default_cutoff_hz`.
        joints: joints scored (default: the 13 shared joints; eyes and ears are left out).
    """
    p, r = _pair(pred, ref)
    c = default_cutoff_hz(fps) if cutoff_hz is None else float(cutoff_hz)
    j = list(joints)
    return TemporalMetrics(
        accel_error=mean_acceleration_error(p[:, j], r[:, j]),
        position_error=mean_position_error(p[:, j], r[:, j]),
        hf_energy=high_frequency_energy(p[:, j], fps, c),
        hf_energy_error=high_frequency_energy(p[:, j] - r[:, j], fps, c),
        pck=pck_track(p, r, 0.2, joints=joints),
        pck05=pck_track(p, r, 0.05, joints=joints),
        cutoff_hz=c,
    )
