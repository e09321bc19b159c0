"""Learned-gain One Euro: a zero-lag smoother whose cut-off a tiny network adapts per joint.

The One Euro filter (:mod:`edgepose.video.one_euro`) low-passes each keypoint with a cut-off
``min_cutoff + beta * |speed| / scale``. Here a 2-layer network, shared by the 17 joints (with a
learned joint embedding), multiplies the two terms by ``exp(g)``, from what the filter sees at
that frame: the keypoint's score now and one frame earlier, the innovation ``|x - y_prev| /
scale``, the filtered speed and the frame interval. Every output is still a convex blend of the
new observation and the previous output, so the filter cannot produce a pose outside what One
Euro could; untrained (``g = 0``) it *is* the One Euro filter with the SDK defaults.

It has zero delay (a result describes its own frame), like One Euro. The network is an ONNX file
(``edgepose/data/gain_one_euro.onnx``, about 1 KB of weights) run with ONNX Runtime; the
recursion runs in numpy. Training: :mod:`edgepose.compression.temporal.gain`; selection and
results: docs/research-notes.md T4.

Example:
    >>> f = LearnedGainFilter()
    >>> smoothed = f(keypoints, timestamp_ms, scale=roi_side, scores=scores)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from edgepose.errors import ConfigError
from edgepose.video.one_euro import OneEuroConfig

_TWO_PI = 2.0 * math.pi
#: The shipped network (chosen on held-out training clips, docs/research-notes.md T4).
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "data" / "gain_one_euro.onnx"
#: the causal stage of :func:`learned_fixed_lag_one_euro` (docs/research-notes.md T9)
FIXED_LAG_MODEL = DEFAULT_MODEL.parent / "gain_fixed_lag_d2.onnx"
#: Features per joint, in the network's input order.
FEATURES = ("score", "previous score", "log1p(20 |x - y_prev| / scale)", "log1p(2 |speed| / scale)",
            "log(30 dt)")
#: :data:`FEATURES` plus the body context: the median over the 17 joints of the innovation and
#: speed features. Real motion moves many joints at once; per-joint jitter does not (round F).
BODY_FEATURES = FEATURES + ("median over joints of log1p(20 |x - y_prev| / scale)",
                            "median over joints of log1p(2 |speed| / scale)")


def gain_features(score: np.ndarray, prev_score: np.ndarray, innovation: np.ndarray,
                  speed: np.ndarray, dt: float, body: bool = False) -> np.ndarray:
    """(17, 5) float32 network input (:data:`FEATURES`; (17, 7), :data:`BODY_FEATURES`, with
    ``body``); ``innovation`` (17,) and ``speed`` (17,) already / scale."""
    f = np.empty((len(score), 7 if body else 5), np.float32)
    f[:, 0] = score
    f[:, 1] = prev_score
    f[:, 2] = np.log1p(20.0 * innovation)
    f[:, 3] = np.log1p(2.0 * speed)
    f[:, 4] = math.log(30.0 * dt)
    if body:  # the median picks one joint's value, so float32 rounding commutes with it
        f[:, 5] = np.median(f[:, 2])
        f[:, 6] = np.median(f[:, 3])
    return f


class LearnedGainFilter:
    """Filters (17, 2) keypoints frame by frame; the same call as :class:`OneEuroFilter` plus scores.

    Args:
        model_path: the gain network (ONNX); default :data:`DEFAULT_MODEL`.
        config: the One Euro base parameters; default: those stored in the model's metadata
            (the ones it was trained around), else :class:`OneEuroConfig` defaults.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, config: OneEuroConfig | None = None):
        import onnxruntime as ort

        path = Path(model_path) if model_path else DEFAULT_MODEL
        if not path.is_file():
            raise ConfigError(f"learned-gain model {str(path)!r} not found; pass model_path=... (an ONNX "
                              "file from edgepose.compression.temporal.gain) or use smoother='one_euro'")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self._sess.get_modelmeta().custom_metadata_map
        #: the model's metadata (``edgepose.*`` keys, JSON values)
        self.metadata = dict(meta)
        if config is None:
            base = json.loads(meta.get("edgepose.one_euro", "{}"))
            config = OneEuroConfig(**base) if base else OneEuroConfig()
        self.config = config
        self.model_path = str(path)
        self._in = self._sess.get_inputs()[0].name
        n_in = self._sess.get_inputs()[0].shape[-1]
        if n_in not in (len(FEATURES), len(BODY_FEATURES)):
            raise ConfigError(f"learned-gain model {str(path)!r} takes {n_in!r} features per joint; this "
                              f"version reads {len(FEATURES)} (FEATURES) or {len(BODY_FEATURES)} "
                              "(BODY_FEATURES): re-export it with edgepose.compression.temporal.gain")
        #: True when the network also reads the body context (:data:`BODY_FEATURES`)
        self.body = n_in == len(BODY_FEATURES)
        self.reset()

    def reset(self) -> None:
        self._y: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None
        self._prev_score: np.ndarray | None = None

    def gains(self, features: np.ndarray) -> np.ndarray:
        """(17, 2) log-multipliers of the cut-off's two terms for (17, 5) (or (17, 7)) features."""
        return self._sess.run(None, {self._in: features[None].astype(np.float32)})[0][0].astype(np.float64)

    def __call__(self, x: np.ndarray, timestamp_ms: float, *, scale: float = 1.0,
                 scores: np.ndarray | None = None) -> np.ndarray:
        """Filter (17, 2) keypoints ``x`` (px) observed at ``timestamp_ms`` with their (17,) ``scores``.

        A time not after the previous one restarts the filter (as :class:`OneEuroFilter`).
        """
        if not scale > 0:
            raise ConfigError(f"LearnedGainFilter scale must be > 0, got {scale!r}")
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (17, 2):
            raise ConfigError(f"LearnedGainFilter filters (17, 2) keypoints, got shape {x.shape}")
        if scores is None:
            raise ConfigError("LearnedGainFilter needs the keypoint scores (scores=...): the gain "
                             "depends on them; use OneEuroFilter when there are none")
        s = np.asarray(scores, dtype=np.float64).reshape(17)
        t = float(timestamp_ms)
        if self._t is None or t <= self._t:
            self._y, self._dx, self._t, self._prev_score = x.copy(), np.zeros_like(x), t, s.copy()
            return x.copy()
        c = self.config
        dt = (t - self._t) * 1e-3
        r_d = _TWO_PI * c.d_cutoff * dt
        a_d = r_d / (1.0 + r_d)
        diff = x - self._y
        dxh = a_d * diff / dt + (1.0 - a_d) * self._dx
        spd = np.abs(dxh) / scale
        f = gain_features(s, self._prev_score, np.linalg.norm(diff, axis=-1) / scale,
                          np.linalg.norm(spd, axis=-1), dt, self.body)
        g = self.gains(f)
        cut = c.min_cutoff * np.exp(g[:, :1]) + c.beta * np.exp(g[:, 1:]) * spd
        r = _TWO_PI * dt * cut
        y = self._y + r / (1.0 + r) * diff
        self._y, self._dx, self._t, self._prev_score = y, dxh, t, s.copy()
        return y.copy()

    def filter_track(self, kps: np.ndarray, scores: np.ndarray, fps: float,
                     scales: np.ndarray) -> np.ndarray:
        """Run over a (T, 17, 2) track (nan rows = no pose: restart after them), like the estimator."""
        self.reset()
        out = np.full(np.shape(kps), np.nan)
        for i, (k, sc) in enumerate(zip(kps, scores)):
            if not np.isfinite(k).all():
                self.reset()
                continue
            out[i] = self(k, i * 1000.0 / fps, scale=float(scales[i]), scores=np.nan_to_num(sc))
        self.reset()
        return out

    def close(self) -> None:
        self._sess = None

    def __enter__(self) -> "LearnedGainFilter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def learned_fixed_lag_one_euro(model_path: str | os.PathLike | None = None):
    """The fixed-lag One Euro with a learned-gain causal stage (issue 7, round E).

    A :class:`~edgepose.video.one_euro.FixedLagOneEuro` (``"triangular"``) whose causal filter is
    :class:`LearnedGainFilter` with ``model_path`` (default :data:`FIXED_LAG_MODEL`, trained at
    delay 2 around the tuned 4 Hz / beta 0 / d_cutoff 0.5 baseline); the delay and the One Euro
    base come from the model's metadata. Push each frame with its scores::

        f = learned_fixed_lag_one_euro()
        for out in f.push(keypoints, t_ms, scale=roi_side, scores=scores): ...

    Measured against the tuned fixed-lag One Euro at the same delay in
    docs/research-notes.md T9.
    """
    from edgepose.video.one_euro import FixedLagOneEuro

    g = LearnedGainFilter(model_path or FIXED_LAG_MODEL)
    delay = json.loads(g.metadata.get("edgepose.delay", "null"))
    if not isinstance(delay, int) or delay < 1:
        raise ConfigError(f"{g.model_path!r} has no fixed-lag delay in its metadata (edgepose.delay = "
                          f"{g.metadata.get('edgepose.delay')!r}); it is a zero-lag model: use LearnedGainFilter")
    return FixedLagOneEuro(g.config, delay, "triangular", causal=g)


__all__ = ["LearnedGainFilter", "DEFAULT_MODEL", "FIXED_LAG_MODEL", "FEATURES", "BODY_FEATURES", "gain_features",
           "learned_fixed_lag_one_euro"]
