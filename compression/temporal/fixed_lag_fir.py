"""Train the learned fixed-lag FIR (:mod:`.learned_fixed_lag`) on teacher tracks.

The model: frame ``t - d`` = ``sum_i w_i f(t-2d+i) + sum_i u_i x(t-2d+i)`` on full windows
(``f`` the causal One Euro output, ``x`` the raw edge track; taps shared by every joint and
coordinate, summing to 1), the triangular fixed-lag One Euro elsewhere. It starts at exactly the
triangular taps (``u = 0``), so the untrained model is the tuned baseline.

Loss: the pooled metrics of :func:`edgepose.compression.temporal.baselines.pooled`, made
differentiable: per clip the mean per-joint Euclidean position error (L1 of the distance) plus
``accel_weight`` x the mean acceleration error (L1 of the acceleration difference's norm),
both in px on the 13 scored joints against the teacher reference, clips weighted by their
frame counts (the position L1 + acceleration L1 family of :mod:`.train`, in the metric's
units). Full-batch Adam in float64; a handful of parameters, seconds per candidate.

Selection and evaluation: docs/research-notes.md T6.

Frame-rate augmentation (:func:`subsample_clip`, :func:`augment_strides`): a clip at stride s
is every s-th frame of the edge track, the teacher reference and the ROI sides, at fps / s;
:func:`prepare` then recomputes the causal One Euro prior on the subsampled track
(docs/research-notes.md T7).
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, replace

import numpy as np

from edgepose.eval.jitter import SHARED13
from edgepose.compression.temporal.learned_fixed_lag import FixedLagTaps, full_window_rows
from edgepose.video.one_euro import OneEuroConfig, triangular_weights
from edgepose.video.tracks import fixed_lag_from_forward, one_euro_track
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

INPUTS = ("prior", "prior+raw")


@dataclass(frozen=True)
class FirConfig:
    """One candidate's recipe.

    Attributes:
        inputs: ``"prior"`` (taps on f only) or ``"prior+raw"`` (taps on f and x).
        accel_weight: weight of the acceleration term against the position term.
        steps: Adam steps (full batch).
        lr: Adam learning rate.
    """

    inputs: str = "prior"
    accel_weight: float = 1.0
    steps: int = 400
    lr: float = 3e-3

    def __post_init__(self):
        if self.inputs not in INPUTS:
            raise ConfigError(f"FirConfig.inputs must be one of {INPUTS}, got {self.inputs!r}")
        if not self.accel_weight >= 0:
            raise ConfigError(f"FirConfig.accel_weight must be >= 0, got {self.accel_weight!r}")

    @property
    def label(self) -> str:
        return f"{self.inputs}_a{self.accel_weight:g}"


@dataclass
class FirClip:
    """What training needs of one clip: raw track, causal One Euro track, triangular baseline,
    reference (nan where unusable), fps and the full-window rows."""

    name: str
    kps: np.ndarray
    forward: np.ndarray
    baseline: np.ndarray
    ref: np.ndarray
    fps: float
    rows: np.ndarray


def subsample_clip(clip, stride: int, offset: int = 0):
    """``clip`` (a :class:`~edgepose.compression.temporal.baselines.TuneClip`) at every
    ``stride``-th frame from ``offset``: edge track, scores, teacher reference and ROI sides
    subsampled alike, ``fps / stride``, name suffixed ``@s{stride}o{offset}`` (stride 1, offset
    0: the clip itself)."""
    if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 1:
        raise ConfigError(f"stride must be an int >= 1, got {stride!r}")
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or not 0 <= offset < stride:
        raise ConfigError(f"offset must be an int from 0 to stride - 1 = {stride - 1}, got {offset!r}")
    if stride == 1:
        return clip
    sl = slice(int(offset), None, int(stride))
    return replace(clip, name=f"{clip.name}@s{stride}o{offset}", edge=clip.edge[sl], scores=clip.scores[sl],
                   teacher=clip.teacher[sl], fps=clip.fps / stride, scales=clip.scales[sl])


def augment_strides(clips, strides=(1, 2, 3, 6), *, all_offsets: bool = True) -> list:
    """Every clip at every stride of ``strides``; with ``all_offsets`` each of the ``stride``
    phases (offsets 0 .. stride - 1) is a clip, so every stride contributes as many frames as
    the native rate; otherwise offset 0 only."""
    return [subsample_clip(c, s, o) for s in strides for c in clips for o in (range(s) if all_offsets else (0,))]


def prepare(clips, config: OneEuroConfig, delay: int) -> list[FirClip]:
    """``clips``: :class:`edgepose.compression.temporal.baselines.TuneClip` (the ROI sides as
    the filter's scale, as the tuning ran it)."""
    out = []
    for c in clips:
        kps = np.asarray(c.edge, dtype=np.float64)
        fwd = one_euro_track(kps, c.fps, config, c.scales)
        base = fixed_lag_from_forward(kps, fwd, c.fps, config, delay, c.scales, method="triangular")
        out.append(FirClip(c.name, kps, fwd, base, np.asarray(c.teacher, np.float64), c.fps,
                           full_window_rows(np.isfinite(kps).all(axis=(1, 2)), delay)))
    return out


def fir_loss_module(data: list, delay: int, inputs: str, accel_weight: float):
    """The taps' loss module: full-batch position + weighted acceleration error over ``data``
    (``theta_w`` / ``theta_u`` parameters; ``taps()`` gives the sum-to-one projected taps)."""
    import torch

    class FirLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            n = 2 * delay + 1
            self.theta_w = torch.nn.Parameter(torch.as_tensor(triangular_weights(delay), dtype=torch.float64).clone())
            self.theta_u = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64))
            self.n, self.raw = n, inputs == "prior+raw"
            self.wsum = sum(d[-1] for d in data)

        def taps(self):
            n, theta_w = self.n, self.theta_w
            u = self.theta_u if self.raw else torch.zeros_like(self.theta_u)
            excess = (theta_w.sum() + u.sum() - 1.0) / (2 * n if self.raw else n)
            w = theta_w - excess
            u = u - excess if self.raw else u
            return w, u

        def forward(self, _batch=None):
            w, u = self.taps()
            pos_t, acc_t = 0.0, 0.0
            for base, ref, pv, av, rows, win, raw, weight in data:
                pred = base.clone()
                pred[rows] = torch.einsum("i,mijc->mjc", w, win) + torch.einsum("i,mijc->mjc", u, raw)
                e = pred - ref
                dist = torch.sqrt((e ** 2).sum(-1) + 1e-12)
                pos = dist[pv].mean()
                acc = e[2:] - 2 * e[1:-1] + e[:-2]  # acc(pred) - acc(ref)
                an = torch.sqrt((acc ** 2).sum(-1) + 1e-12)[av].mean()
                pos_t = pos_t + weight * pos
                acc_t = acc_t + weight * an
            pos, acc = pos_t / self.wsum, acc_t / self.wsum
            return {"pos": pos, "accel": accel_weight * acc, "_acc": acc.detach()}

    return FirLoss()


def train_fir(clips: list[FirClip], config: OneEuroConfig, delay: int, cfg: FirConfig) -> tuple[FixedLagTaps, dict]:
    """Fit the taps on ``clips``; returns (taps, {"loss": [first, last]})."""
    import torch

    torch.manual_seed(0)
    n = 2 * delay + 1
    j = list(SHARED13)
    data = []
    for c in clips:
        if not c.rows.size:
            continue
        base = c.baseline[:, j]
        ref = c.ref[:, j]
        pv = np.isfinite(base).all(-1) & np.isfinite(ref).all(-1)  # (N, 13)
        av = pv[2:] & pv[1:-1] & pv[:-2]
        if not pv.any() or not av.any():
            continue  # pooled() skips such clips
        win = np.stack([c.forward[c.rows - delay + i][:, j] for i in range(n)], axis=1)  # (M, n, 13, 2)
        raw = np.stack([c.kps[c.rows - delay + i][:, j] for i in range(n)], axis=1)
        t = lambda a: torch.as_tensor(np.nan_to_num(a), dtype=torch.float64)  # noqa: E731
        data.append((t(base), t(ref), torch.as_tensor(pv), torch.as_tensor(av), torch.as_tensor(c.rows),
                     t(win), t(raw), float(len(c.kps))))
    from ..train import Trainer, TrainerConfig

    loss_module = fir_loss_module(data, delay, cfg.inputs, cfg.accel_weight)
    params = [loss_module.theta_w] + ([loss_module.theta_u] if cfg.inputs == "prior+raw" else [])
    tcfg = TrainerConfig(steps=cfg.steps, lr=cfg.lr, weight_decay=0.0, optimizer="adam", schedule="constant",
                         grad_clip=0.0, device="cpu", channels_last=False, check_finite=False, progress=False,
                         desc=cfg.label)
    res = Trainer(loss_module, None, tcfg, params=params).fit()
    hist = [(h["loss"], h["pos"], h["_acc"]) for h in (res.history[0], res.history[-1])]
    taps = loss_module.taps
    w, u = taps()
    w, u = w.detach().numpy(), u.detach().numpy()
    if cfg.inputs == "prior":
        u = np.zeros(n)
    # exact sum 1 in float64 after the projection's rounding
    w[delay] += 1.0 - (w.sum() + u.sum())
    log.info("%s: loss %.4f -> %.4f (pos %.3f acc %.3f); prior %s raw %s", cfg.label, hist[0][0], hist[-1][0],
             hist[-1][1], hist[-1][2], np.round(w, 4), np.round(u, 4))
    return FixedLagTaps(config, delay, tuple(map(float, w)), tuple(map(float, u))), {
        "loss_first": hist[0], "loss_last": hist[-1]}
