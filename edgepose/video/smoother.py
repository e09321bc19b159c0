"""Learned keypoint smoother (SmoothNet idea) run with numpy + an edgepose backend.

A tiny network (``edgepose/data/smoothnet_w32.onnx``, trained by
``edgepose.compression.temporal``) denoises a window of T frames of each keypoint coordinate.
Two ways to run it:

* **Online** (:meth:`LearnedSmoother.push`): a fixed, declared delay of ``delay`` frames. After
  frame t arrives the smoother emits frame ``t - delay``, computed from frames
  ``t - T + 1 .. t`` only; it never reads a frame beyond ``t``. ``delay=0`` is zero-lag.
  :meth:`LearnedSmoother.flush` emits the last ``delay`` frames at the end of a stream.
* **Offline** (:meth:`LearnedSmoother.smooth_track`, ``offline=True``): every frame from the
  window centred on it (``offline_delay`` = T/2 frames of look-ahead, fewer at the clip's end),
  all windows in one batched call.

Uncertainty gating (``min_score``): keypoints whose score is below it do not enter the window
as observations; they are filled by interpolation of the confident ones around them, so a
wrong low-confidence detection cannot drag the smoothed track.

Missing poses (no person) are gaps: they are filled the same way and emitted as ``None``.

Prefiltered models (``edgepose.prefilter`` metadata, e.g. the zero-lag
``smoothnet_w32_zerolag.onnx``): the network also sees the causal One Euro filter's output
(computed here, restarted at gaps, the person size being each frame's pose box side) and
returns that output plus a learned correction. They need real timestamps
(:meth:`LearnedSmoother.push` always has them; pass ``timestamps_ms`` to ``smooth_track``).
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass

import numpy as np

from edgepose.video._temporal import (SMOOTHER_FILE, ZERO_LAG_SMOOTHER_FILE, DATA_DIR, TemporalModel,
                                      fill_gaps, frame_side, from_channels, person_scale,
                                      prefilter_config, to_channels)
from edgepose.video.one_euro import OneEuroFilter
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmootherOptions:
    """Options of :class:`LearnedSmoother`.

    Attributes:
        model_path: the exported smoother (.onnx); None = the shipped one: for ``delay=0``
            ``edgepose/data/smoothnet_w32_zerolag.onnx`` (zero-lag, One Euro prefilter) when
            present, else ``edgepose/data/smoothnet_w32.onnx`` (every delay up to 16).
        delay: frames of look-ahead in online mode (the added latency is delay / fps). 0 is
            zero-lag; 2-4 (67-133 ms at 30 fps) already reach most of the offline quality.
            At most the model's ``edgepose.max_delay`` (16 for the shipped one).
        min_score: uncertainty gating: keypoints scored below this are interpolated from their
            confident neighbours in the window instead of being observed. None (default) turns
            gating off: the network was trained on ungated edge tracks.
        num_threads: backend threads; 1 because the model is ~20 k parameters.
    """

    model_path: str | os.PathLike | None = None
    delay: int = 4
    min_score: float | None = None
    num_threads: int | None = 1

    def __post_init__(self):
        if not isinstance(self.delay, int) or self.delay < 0:
            raise ConfigError(f"SmootherOptions.delay must be an int >= 0, got {self.delay!r}")
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"SmootherOptions.min_score must be in [0, 1] or None, got {self.min_score!r}")


@dataclass
class SmoothedFrame:
    """One emitted frame: ``keypoints`` (17, 2) float32, or None where the input had no pose."""

    index: int
    timestamp_ms: int
    keypoints: np.ndarray | None


class LearnedSmoother:
    """Runs the learned smoother online (fixed delay) or offline over a whole track.

    Example:
        >>> sm = LearnedSmoother(SmootherOptions(delay=4))              # doctest: +SKIP
        >>> for res in results:                                          # doctest: +SKIP
        ...     pose = res.pose
        ...     for out in sm.push(pose and pose.keypoints, res.timestamp_ms,
        ...                        scores=pose and pose.scores):
        ...         draw(out.index, out.keypoints)

    Args:
        options: :class:`SmootherOptions`.
    """

    def __init__(self, options: SmootherOptions | None = None):
        self.options = options or SmootherOptions()
        default = SMOOTHER_FILE
        if self.options.delay == 0 and (DATA_DIR / ZERO_LAG_SMOOTHER_FILE).is_file():
            default = ZERO_LAG_SMOOTHER_FILE
        self.model = TemporalModel(self.options.model_path, kind="smoother",
                                   default_file=default, num_threads=self.options.num_threads)
        #: One Euro parameters of the model's prefilter input, or None (a plain SmoothNet)
        self.prefilter = prefilter_config(self.model.metadata)
        #: the model also reads each keypoint's score (metadata ``edgepose.inputs``)
        self.reads_scores = "score" in self.model.metadata.get("edgepose.inputs", "").split(",")
        self.window = self.model.window
        #: the largest delay the model was trained for (its metadata), and the offline mode's
        self.max_delay = int(self.model.metadata.get("edgepose.max_delay", self.window - 1))
        self.offline_delay = min(self.max_delay, self.window // 2)
        if self.options.delay > self.max_delay:
            self.model.close()
            raise ConfigError(f"SmootherOptions.delay must be <= {self.max_delay} (the largest delay "
                             f"{self.model.path.name} was trained for), got {self.options.delay}")
        self.delay = self.options.delay
        self.reset()

    # -- online ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the history (e.g. on a scene cut); pending frames are dropped."""
        self._obs: collections.deque = collections.deque(maxlen=self.window)
        self._pending: collections.deque = collections.deque()
        self._count = 0
        self._oe = OneEuroFilter(self.prefilter) if self.prefilter is not None else None

    def push(self, keypoints: np.ndarray | None, timestamp_ms: int, *,
             scores: np.ndarray | None = None) -> list[SmoothedFrame]:
        """Add the next frame's pose; returns the frame ``delay`` frames back once it is known.

        Args:
            keypoints: (17, 2) pixels, or None when no person was found.
            timestamp_ms: the frame's timestamp.
            scores: (17,) keypoint scores, used for gating.

        Returns:
            [] while the first ``delay`` frames fill the look-ahead, then exactly one frame.
        """
        kp, valid = self._observation(keypoints, scores)
        if self._oe is None:
            self._obs.append((kp, valid, None, None))
        elif keypoints is None:  # a gap restarts a prefiltered model, like the One Euro filter it
            self._oe.reset()     # refines: it was trained on gap-free tracks (and is zero-lag, so
            self._obs.clear()    # no pending frame needs the old window)
        else:
            sc = None
            if self.reads_scores:
                if scores is None:
                    raise ConfigError(f"{self.model.path.name} reads the keypoint scores: pass scores= "
                                     "(the pose's (17,) scores) with each pose")
                sc = np.asarray(scores, dtype=np.float64).reshape(17)
            self._obs.append((kp, valid, self._oe(kp, timestamp_ms, scale=float(frame_side(kp))), sc))
        self._pending.append((self._count, int(timestamp_ms), keypoints is not None))
        self._count += 1
        if len(self._pending) <= self.delay:
            return []
        return [self._emit(self.delay)]

    def flush(self) -> list[SmoothedFrame]:
        """End of stream: emit the frames still waiting for their look-ahead."""
        out = []
        while self._pending:
            out.append(self._emit(len(self._pending) - 1))
        return out

    def _observation(self, keypoints, scores):
        if keypoints is None:
            return np.full((17, 2), np.nan), np.zeros(17, bool)
        kp = np.asarray(keypoints, dtype=np.float64).reshape(17, 2)
        valid = np.isfinite(kp).all(axis=1)
        if self.options.min_score is not None and scores is not None:
            valid &= np.asarray(scores, dtype=np.float64).reshape(17) >= self.options.min_score
        return kp, valid

    def _emit(self, lookahead: int) -> SmoothedFrame:
        """Smooth the oldest pending frame, which has ``lookahead`` newer frames in the buffer."""
        idx, ts, present = self._pending.popleft()
        if not present:
            return SmoothedFrame(idx, ts, None)
        kps = np.stack([o[0] for o in self._obs])
        valid = np.stack([o[1] for o in self._obs])
        pf = np.stack([o[2] for o in self._obs]) if self._oe is not None else None
        sc = np.stack([o[3] for o in self._obs]) if self.reads_scores else None
        pad = self.window - len(kps)
        rep = lambda a: None if a is None else np.concatenate([np.repeat(a[:1], pad, axis=0), a])  # noqa: E731
        if pad:  # stream start: repeat the first frame, as in training
            kps, valid, pf, sc = rep(kps), rep(valid), rep(pf), rep(sc)
        pos = self.window - 1 - lookahead
        out = self._run(kps[None], valid[None], None if pf is None else pf[None],
                        None if sc is None else sc[None])[0]
        return SmoothedFrame(idx, ts, out[pos].astype(np.float32))

    # -- batched ---------------------------------------------------------------------------------
    def _run(self, wins: np.ndarray, valid: np.ndarray, pre: np.ndarray | None = None,
             conf: np.ndarray | None = None) -> np.ndarray:
        """Smooth a batch of windows (B, T, 17, 2) with validity (B, T, 17) -> (B, T, 17, 2);
        ``pre``: the prefilter's output for the same windows (prefiltered models); ``conf``:
        (B, T, 17) keypoint scores (models that read them)."""
        b, t = wins.shape[:2]
        chans, centers, scales, has = [], [], [], []
        for i, (w, v) in enumerate(zip(wins, valid)):
            wv = np.where(v[:, :, None], w, np.nan)
            scale = person_scale(wv)
            ch, center = to_channels(wv, scale)
            vc = np.repeat(v.T, 2, axis=0)
            ch, ok = fill_gaps(ch, vc)
            if pre is not None:  # (C, 2, T): [prefiltered, raw], normalised alike
                pc, _ = to_channels(np.where(v[:, :, None], pre[i], np.nan), scale, center)
                parts = [fill_gaps(pc, vc)[0], ch]
                if conf is not None:
                    parts.append(np.repeat(conf[i].T, 2, axis=0))
                ch = np.stack(parts, axis=1)
            chans.append(ch)
            centers.append(center)
            scales.append(scale)
            has.append(ok)
        y = self.model(np.concatenate(chans)).reshape(b, -1, t)
        out = np.empty_like(wins, dtype=np.float64)
        for i in range(b):
            px = from_channels(y[i], centers[i], scales[i])
            px[:, ~has[i].reshape(17, 2).all(axis=1)] = np.nan
            out[i] = px
        return out

    def smooth_track(self, keypoints: np.ndarray, scores: np.ndarray | None = None, *,
                     timestamps_ms=None, offline: bool = False) -> np.ndarray:
        """Smooth a whole (N, 17, 2) track (nan rows = no pose); returns (N, 17, 2).

        ``offline=False`` runs the online algorithm (:meth:`push` + :meth:`flush`, same output
        as a live stream); ``offline=True`` gives the online algorithm's output at the offline
        delay (``offline_delay``, window centred on the frame) in one batched model call.
        """
        kps = np.asarray(keypoints, dtype=np.float64)
        n = len(kps)
        present = np.isfinite(kps).all(axis=(1, 2))
        if self.prefilter is not None and timestamps_ms is None:
            raise ConfigError(f"{self.model.path.name} has a One Euro prefilter, which needs the frames' "
                             "times: pass timestamps_ms=np.arange(n) * 1000 / fps")
        if not offline or self.prefilter is not None:  # prefiltered: zero-lag only, online = offline
            self.reset()
            ts = np.arange(n) if timestamps_ms is None else timestamps_ms
            outs = []
            for i in range(n):
                outs += self.push(kps[i] if present[i] else None, ts[i],
                                  scores=None if scores is None else scores[i])
            outs += self.flush()
            self.reset()
            return np.stack([o.keypoints if o.keypoints is not None else np.full((17, 2), np.nan)
                             for o in outs])
        valid = np.isfinite(kps).all(axis=2)
        if self.options.min_score is not None and scores is not None:
            valid &= np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0) >= self.options.min_score
        # the online algorithm at the offline delay, all windows in one call: frame i is read
        # from the window ending at min(i + D, n - 1), the stream start padded by repetition
        t, d = self.window, self.offline_delay
        ends = np.minimum(np.arange(n) + d, n - 1)
        rows = np.maximum(ends[:, None] - t + 1 + np.arange(t)[None], 0)
        res = self._run(kps[rows], valid[rows])
        out = res[np.arange(n), t - 1 - (ends - np.arange(n))]
        out[~present] = np.nan
        return out.astype(np.float32)

    def close(self) -> None:
        self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

