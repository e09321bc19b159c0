"""Shared pieces of the learned temporal models (smoother, keyframe recovery): window
normalisation and the ONNX model wrapper. Numpy only; the training recipes in
``edgepose.compression.temporal`` import the same normalisation so training and runtime agree.

A window is ``(T, 17, 2)`` pixels. The models see each coordinate's signal separately
(weights shared across joints and x / y): ``(C, T)`` with ``C = 34``, each channel shifted by
its window mean and divided by the person's size, so they are translation- and scale-free.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from edgepose.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
#: The shipped smoother and recovery models (trained by edgepose.compression.temporal).
SMOOTHER_FILE = "smoothnet_w32.onnx"
#: The zero-lag smoother with a One Euro prefilter input (used for delay 0 when shipped).
ZERO_LAG_SMOOTHER_FILE = "smoothnet_w32_zerolag.onnx"
RECOVERY_FILE = "keyframe_recovery_w32.onnx"
#: Smallest person size (px) used to normalise, so a degenerate pose cannot divide by ~0.
MIN_SCALE = 8.0


def person_scale(win: np.ndarray) -> float:
    """Median over frames of the pose's bounding-box longer side (px), nan-safe, >= MIN_SCALE."""
    w = np.asarray(win, dtype=np.float64)
    fin = np.isfinite(w).all(axis=-1)  # (T, J)
    hi = np.where(fin[..., None], w, -np.inf).max(axis=1)  # (T, 2)
    lo = np.where(fin[..., None], w, np.inf).min(axis=1)
    side = (hi - lo).max(axis=1)[fin.any(axis=1)]
    return float(max(np.median(side), MIN_SCALE)) if side.size else MIN_SCALE


def to_channels(win: np.ndarray, scale: float, center: np.ndarray | None = None):
    """(T, J, 2) window -> ((J*2, T) normalised channels, (J*2,) centre).

    The centre is each channel's mean over the window's finite values (0 for an empty channel).
    """
    t = len(win)
    ch = np.asarray(win, dtype=np.float64).reshape(t, -1).T  # (C, T)
    if center is None:
        fin = np.isfinite(ch)
        cnt = fin.sum(axis=1)
        center = np.where(cnt > 0, np.where(fin, ch, 0.0).sum(axis=1) / np.maximum(cnt, 1), 0.0)
    return (ch - center[:, None]) / scale, center


def from_channels(ch: np.ndarray, center: np.ndarray, scale: float, joints: int = 17) -> np.ndarray:
    """Inverse of :func:`to_channels`: (C, T) -> (T, J, 2) pixels."""
    px = ch * scale + center[:, None]
    return px.T.reshape(ch.shape[1], joints, 2)


def frame_side(kp: np.ndarray) -> np.ndarray:
    """Bounding-box longer side (px, >= MIN_SCALE) of each frame's pose: (..., J, 2) -> (...).

    The person size the One Euro prefilter of a :class:`PriorSmoothNet`-style smoother divides
    the speed by (the runtime has no ROI there, only the keypoints).
    """
    kp = np.asarray(kp, dtype=np.float64)
    ext = (kp.max(axis=-2) - kp.min(axis=-2)).max(axis=-1)
    return np.maximum(ext, MIN_SCALE)


def prefilter_config(metadata: dict):
    """The One Euro prefilter of a smoother from its ``edgepose.prefilter`` metadata (JSON:
    ``{"kind": "one_euro", "min_cutoff": .., "beta": .., "d_cutoff": ..}``), or None."""
    from edgepose.video.one_euro import OneEuroConfig

    raw = metadata.get("edgepose.prefilter")
    if not raw:
        return None
    d = json.loads(raw)
    if d.get("kind") != "one_euro":
        raise ModelLoadError(f"edgepose.prefilter kind {d.get('kind')!r} is not supported (only 'one_euro')")
    return OneEuroConfig(min_cutoff=d["min_cutoff"], beta=d["beta"], d_cutoff=d["d_cutoff"])


def one_euro_batch(x: np.ndarray, dt: np.ndarray, scale: np.ndarray, cfg) -> np.ndarray:
    """One Euro over a batch of gap-free sequences, the arithmetic of
    :class:`edgepose.video.one_euro.OneEuroFilter` vectorised over the batch (training side).

    Args:
        x: (B, N, ...) values (px), frame 0 starts each filter.
        dt: (B,) seconds between frames of each sequence.
        scale: (B, N) the person size of each frame (:func:`frame_side`).
        cfg: a ``OneEuroConfig``.

    Returns:
        (B, N, ...) filtered values.
    """
    x = np.asarray(x, dtype=np.float64)
    extra = (1,) * (x.ndim - 2)
    dt = np.asarray(dt, dtype=np.float64).reshape((-1,) + extra)
    out = np.empty_like(x)
    xh, dxh = x[:, 0].copy(), np.zeros_like(x[:, 0])
    out[:, 0] = xh
    r_d = 2.0 * math.pi * cfg.d_cutoff * dt
    a_d = r_d / (1.0 + r_d)
    for i in range(1, x.shape[1]):
        diff = x[:, i] - xh
        dxh = diff * (a_d / dt) + (1.0 - a_d) * dxh
        r = np.abs(dxh) * (2.0 * math.pi * dt * cfg.beta / scale[:, i].reshape((-1,) + extra)) \
            + 2.0 * math.pi * dt * cfg.min_cutoff
        xh = xh + diff * (r / (1.0 + r))
        out[:, i] = xh
    return out


def fill_gaps(ch: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill invalid entries of each channel by linear interpolation of its valid ones (held
    constant beyond the first / last valid entry).

    Args:
        ch: (C, T) channels.
        valid: (C, T) bool.

    Returns:
        (filled channels, (C,) bool: channel had at least one valid entry; others are left 0).
    """
    out = np.where(valid, ch, 0.0)
    has = valid.any(axis=1)
    t = np.arange(ch.shape[1])
    for c in np.nonzero(has & ~valid.all(axis=1))[0]:
        v = valid[c]
        out[c] = np.interp(t, t[v], ch[c, v])
    return out, has


class TemporalModel:
    """An exported temporal model (ONNX) run through an edgepose backend.

    Reads ``edgepose.kind`` and ``edgepose.window`` from the model's metadata and checks them.

    Args:
        path: the .onnx file (None: the shipped file ``default_file``).
        kind: expected ``edgepose.kind`` (``"smoother"`` or ``"recovery"``).
        default_file: file name in ``edgepose/data`` used when ``path`` is None.
        num_threads: intra-op threads (1: these models are tiny; more threads only add overhead).
    """

    def __init__(self, path: str | os.PathLike | None, *, kind: str, default_file: str,
                 num_threads: int | None = 1):
        from edgepose.backends import open_backend

        self.path = Path(path) if path is not None else DATA_DIR / default_file
        if not self.path.is_file():
            raise ModelLoadError(
                f"temporal model not found: {self.path}; pass the path of an exported model "
                "(python -m edgepose.compression.temporal.train --help) or reinstall edgepose")
        self.backend = open_backend(self.path, num_threads=num_threads)
        meta = self.backend.metadata
        got = meta.get("edgepose.kind")
        if got != kind:
            self.backend.close()
            raise ModelLoadError(f"{self.path} is a {got!r} model (metadata edgepose.kind), "
                                 f"expected {kind!r}; pass a {kind} model")
        self.window = int(meta.get("edgepose.window", "0"))
        if self.window < 4:
            self.backend.close()
            raise ModelLoadError(f"{self.path}: metadata edgepose.window {self.window!r} is missing or < 4")
        self.metadata = meta
        self.input_name = self.backend.inputs[0].name
        self.output_name = self.backend.outputs[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run the model on normalised channels; float32 in, float64 out. A model with a fixed
        channel count (a TFLite export: one window of 34 channels) runs window by window."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        fixed = self.backend.inputs[0].shape[0]
        if isinstance(fixed, int) and fixed > 0 and len(x) != fixed:
            if len(x) % fixed:
                raise ConfigError(f"{self.path.name} takes {fixed} channels per call, got {len(x)}")
            return np.concatenate([self(x[i:i + fixed]) for i in range(0, len(x), fixed)])
        return self.backend.run({self.input_name: x})[self.output_name].astype(np.float64)

    def close(self) -> None:
        self.backend.close()
