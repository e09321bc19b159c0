"""Sparse keyframes with recovery (DeciWatch idea): run the pose model on every k-th frame and
reconstruct the frames in between.

:class:`KeyframeRecovery` is online with a bounded delay: frame ``n`` is a keyframe when
``n % interval == 0``; when keyframe ``n`` arrives the frames ``n - k + 1 .. n`` are emitted,
so a frame waits at most ``k - 1`` frames (``max_delay``) and nothing later than the newest
keyframe is ever read. Two methods:

* ``"learned"``: the recovery network (``edgepose/data/keyframe_recovery_w32.onnx``) sees the
  window of T frames ending at the newest keyframe (the linear interpolation of its keyframes
  plus the keyframe mask) and outputs every frame of it, keyframes denoised, in-betweens
  recovered. One network serves k = 2..6.
* ``"linear"``: linear interpolation between the two newest keyframes (the baseline).

Frames after the last keyframe of a stream (:meth:`KeyframeRecovery.flush`) hold the last
keyframe (``propagated``). A keyframe without a person cuts the history; frames between it
and the previous keyframe are emitted as ``None``.
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass

import numpy as np

from edgepose.types import Source
from edgepose.video._temporal import (RECOVERY_FILE, TemporalModel, from_channels, person_scale,
                                      to_channels)
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("learned", "linear")


@dataclass(frozen=True)
class KeyframeOptions:
    """Options of :class:`KeyframeRecovery`.

    Attributes:
        interval: run the pose model on every ``interval``-th frame (k). 3 keeps PCK within
            ~1 point of every-frame inference on the evaluation clips at a third of the
            model's compute; the budget controller may raise it.
        method: ``"learned"`` (recovery network) or ``"linear"`` (interpolation baseline).
        model_path: the exported recovery model (.onnx); None = the shipped one.
        num_threads: backend threads; 1, the model is tiny.
    """

    interval: int = 3
    method: str = "learned"
    model_path: str | os.PathLike | None = None
    num_threads: int | None = 1

    def __post_init__(self):
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ConfigError(f"KeyframeOptions.interval must be an int >= 1, got {self.interval!r}")
        if self.method not in METHODS:
            raise ConfigError(f"KeyframeOptions.method must be one of {', '.join(METHODS)}, "
                             f"got {self.method!r}")


@dataclass
class RecoveredFrame:
    """One emitted frame: ``keypoints`` (17, 2) float32 or None, and where it came from."""

    index: int
    timestamp_ms: int
    keypoints: np.ndarray | None
    source: Source


class KeyframeRecovery:
    """Online keyframe scheduler + recovery.

    Example:
        >>> rec = KeyframeRecovery(KeyframeOptions(interval=3))          # doctest: +SKIP
        >>> for frame in source:                                          # doctest: +SKIP
        ...     kps = None
        ...     if rec.is_keyframe(frame.index):
        ...         pose = estimator.detect_for_video(frame.image, frame.timestamp_ms).pose
        ...         kps = None if pose is None else pose.keypoints
        ...     for out in rec.push(kps, frame.timestamp_ms):
        ...         draw(out.index, out.keypoints)

    Args:
        options: :class:`KeyframeOptions`.
    """

    def __init__(self, options: KeyframeOptions | None = None):
        self.options = options or KeyframeOptions()
        self.interval = self.options.interval
        self.model = None
        if self.options.method == "learned" and self.interval > 1:
            self.model = TemporalModel(self.options.model_path, kind="recovery",
                                       default_file=RECOVERY_FILE, num_threads=self.options.num_threads)
            trained = self.model.metadata.get("edgepose.intervals")
            ok = ([int(v) for v in trained.split(",")] if trained else
                  list(range(2, self.model.window)))
            if self.interval not in ok:
                self.model.close()
                raise ConfigError(f"KeyframeOptions.interval {self.interval} is not one the recovery "
                                 f"model was trained for ({', '.join(map(str, ok))}); use one of "
                                 "them or method='linear'")
        self.window = self.model.window if self.model else 0
        self.reset()

    @property
    def max_delay(self) -> int:
        """Frames a frame waits at most before it is emitted (k - 1)."""
        return self.interval - 1

    def reset(self) -> None:
        """Forget the history and the frame count (e.g. on a scene cut)."""
        n_keep = (self.window // self.interval + 2) if self.window else 2
        self._keys: collections.deque = collections.deque(maxlen=n_keep)  # (index, kps)
        self._pending: list[tuple[int, int]] = []  # non-keyframes waiting: (index, ts)
        self._count = 0

    def is_keyframe(self, index: int | None = None) -> bool:
        """Whether the frame ``index`` (default: the next one pushed) needs the pose model."""
        n = self._count if index is None else index
        return n % self.interval == 0

    def push(self, keypoints: np.ndarray | None, timestamp_ms: int) -> list[RecoveredFrame]:
        """Add the next frame: its model output on keyframes (None: no person), None otherwise.

        Returns:
            The frames completed by this one, in order (empty on a non-keyframe).
        """
        n = self._count
        self._count += 1
        if not self.is_keyframe(n):
            self._pending.append((n, int(timestamp_ms)))
            return []
        kps = None if keypoints is None else np.asarray(keypoints, np.float64).reshape(17, 2)
        if kps is None or not np.isfinite(kps).all():
            out = [RecoveredFrame(i, ts, None, Source.RECOVERED) for i, ts in self._pending]
            self._pending = []
            self._keys.clear()
            return out + [RecoveredFrame(n, int(timestamp_ms), None, Source.EDGE)]
        if not self._keys:  # nothing to interpolate from
            out = [RecoveredFrame(i, ts, None, Source.RECOVERED) for i, ts in self._pending]
            self._pending = []
            self._keys.append((n, kps))
            return out + [RecoveredFrame(n, int(timestamp_ms), kps.astype(np.float32), Source.EDGE)]
        self._keys.append((n, kps))
        frames = self._recover() if self.model is not None else self._linear()
        out = [RecoveredFrame(i, ts, frames[j].astype(np.float32), Source.RECOVERED)
               for j, (i, ts) in enumerate(self._pending)]
        self._pending = []
        return out + [RecoveredFrame(n, int(timestamp_ms), frames[-1].astype(np.float32), Source.EDGE)]

    def flush(self) -> list[RecoveredFrame]:
        """End of stream: frames after the last keyframe hold it (``propagated``)."""
        last = self._keys[-1][1].astype(np.float32) if self._keys else None
        out = [RecoveredFrame(i, ts, last, Source.PROPAGATED) for i, ts in self._pending]
        self._pending = []
        return out

    # -- methods ---------------------------------------------------------------------------------
    def _linear(self) -> np.ndarray:
        """(k, 17, 2): frames n-k+1 .. n between the two newest keyframes."""
        (a, ka), (b, kb) = self._keys[-2], self._keys[-1]
        w = (np.arange(a + 1, b + 1) - a) / float(b - a)
        return ka[None] + w[:, None, None] * (kb - ka)[None]

    def _recover(self) -> np.ndarray:
        t, k = self.window, self.interval
        newest = self._keys[-1][0]
        first = newest - t + 1
        pos = np.arange(t - 1, -1, -k)[::-1]  # keyframe positions in the window
        have = {i - first: kp for i, kp in self._keys if i >= first}
        oldest = min(have)
        vals = np.stack([have[p] if p in have else have[oldest] for p in pos])  # replicate at start
        win = np.einsum("tp,pjc->tjc", self._interp_weights(pos), vals)
        scale = person_scale(win[pos])
        ch, center = to_channels(win, scale)
        mask = np.zeros(t)
        mask[pos] = 1.0
        x = np.stack([ch, np.broadcast_to(mask, ch.shape)], axis=1)  # (34, 2, T)
        y = self.model(x)
        px = from_channels(y, center, scale)
        return px[t - k:]

    def _interp_weights(self, pos: np.ndarray) -> np.ndarray:
        """(T, len(pos)) linear-interpolation weights from the keyframe positions (cached)."""
        if getattr(self, "_weights", None) is None:
            eye = np.eye(len(pos))
            tt = np.arange(self.window)
            self._weights = np.stack([np.interp(tt, pos, e) for e in eye], axis=1)
        return self._weights

    def recover_track(self, keypoints: np.ndarray, timestamps_ms=None) -> np.ndarray:
        """Run the online algorithm over a (N, 17, 2) track whose keyframe rows hold the model
        output (nan: no person) and whose other rows are ignored; returns (N, 17, 2)."""
        kps = np.asarray(keypoints, dtype=np.float64)
        n = len(kps)
        ts = np.arange(n) if timestamps_ms is None else timestamps_ms
        self.reset()
        outs = []
        for i in range(n):
            kp = kps[i] if self.is_keyframe(i) and np.isfinite(kps[i]).all() else None
            outs += self.push(kp, int(ts[i]))
        outs += self.flush()
        self.reset()
        return np.stack([o.keypoints if o.keypoints is not None else np.full((17, 2), np.nan)
                         for o in outs]).astype(np.float32)

    def close(self) -> None:
        if self.model is not None:
            self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
