"""Train the learned-gain One Euro filter (:mod:`edgepose.video.gain_filter`) on teacher tracks.

The recursion of the filter is unrolled in torch over 256-frame segments of the licence-clean
training clips (edge track in, Thunder teacher track as reference, the references' exclusions of
:func:`edgepose.compression.temporal.baselines.teacher_reference`), and the network is trained
with ``position L2 + accel_weight x acceleration L2`` in pixels, the two quantities the metrics
pool. The last layer starts at zero, so training starts from the One Euro filter itself.

    from edgepose.compression.temporal.gain import GainConfig, train_gain, export_gain
    net, log = train_gain(train_clips, GainConfig(accel_weight=1.5, steps=600))
    export_gain(net, "gain.onnx")

The two shipped models (recipes of docs/research-notes.md T4 and T9, retrained on the
licence-clean list in L1; training clips = ``TRAIN_VIDEOS`` minus :data:`HELD_OUT`):

    python -m edgepose.compression.temporal.gain --model gain_one_euro --out edgepose/data/gain_one_euro.onnx
    python -m edgepose.compression.temporal.gain --model gain_fixed_lag_d2 --out edgepose/data/gain_fixed_lag_d2.onnx
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from edgepose.video.gain_filter import BODY_FEATURES, FEATURES
from edgepose.video.one_euro import OneEuroConfig

log = logging.getLogger(__name__)
_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class GainConfig:
    """Training settings (the shipped model: accel_weight 1.5, 600 steps, seed 0)."""

    accel_weight: float = 1.5
    steps: int = 600
    lr: float = 3e-3
    batch: int = 16
    segment: int = 256
    stride: int = 200
    hidden: int = 16
    seed: int = 0
    #: also feed the body context (:data:`~edgepose.video.gain_filter.BODY_FEATURES`, round F)
    body: bool = False


class GainNet(torch.nn.Module):
    """(B, 17, 5) features (``body``: (B, 17, 7)) -> (B, 17, 2) log-multipliers of One Euro's two
    cut-off terms."""

    def __init__(self, hidden: int = 16, body: bool = False):
        super().__init__()
        self.body = body
        self.n_features = len(BODY_FEATURES if body else FEATURES)
        self.emb = torch.nn.Embedding(17, 4)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(4 + self.n_features, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, 2))
        torch.nn.init.zeros_(self.mlp[2].weight)
        torch.nn.init.zeros_(self.mlp[2].bias)
        torch.nn.init.zeros_(self.emb.weight)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        e = self.emb.weight.expand(feats.shape[0], 17, self.emb.weight.shape[1]).to(feats.dtype)
        return self.mlp(torch.cat([e, feats], -1))


def unroll(net: GainNet, x, score, valid, scale, dt, cfg: OneEuroConfig = OneEuroConfig()) -> torch.Tensor:
    """The filter over (B, T, 17, 2) tracks; ``valid`` (B, T) restarts after gaps. Returns (B, T, 17, 2)."""
    y = x[:, 0]
    dx = torch.zeros_like(y)
    prev_ok, prev_s = valid[:, 0], score[:, 0]
    out = [y]
    for t in range(1, x.shape[1]):
        xt, ok = x[:, t], valid[:, t]
        s, d = scale[:, t][:, None, None], dt[:, t][:, None, None]
        r_d = _TWO_PI * cfg.d_cutoff * d
        a_d = r_d / (1 + r_d)
        diff = xt - y
        dxh = a_d * diff / d + (1 - a_d) * dx
        spd = dxh.abs() / s
        inn = diff.norm(dim=-1) / s[..., 0]
        cols = [score[:, t], prev_s, torch.log1p(inn * 20), torch.log1p(spd.norm(dim=-1) * 2),
                torch.log(d[..., 0] * 30).expand_as(inn)]
        if net.body:  # 17 joints: the median is the middle value, as numpy's
            cols += [c.median(dim=1, keepdim=True).values.expand_as(inn) for c in cols[2:4]]
        f = torch.stack(cols, -1)
        g = net(f)
        cut = cfg.min_cutoff * torch.exp(g[..., :1]) + cfg.beta * torch.exp(g[..., 1:]) * spd
        r = _TWO_PI * d * cut
        yn = y + r / (1 + r) * diff
        restart = (ok & ~prev_ok)[:, None, None]
        keep = (~ok)[:, None, None]
        yn = torch.where(restart, xt, yn)
        dxn = torch.where(restart, torch.zeros_like(dxh), dxh)
        y = torch.where(keep, y, yn)
        dx = torch.where(keep, dx, dxn)
        prev_ok = ok
        prev_s = torch.where(ok[:, None], score[:, t], prev_s)
        out.append(y)
    return torch.stack(out, 1)


def to_batch(clips) -> list[torch.Tensor]:
    """TuneClip-like objects (edge, scores, teacher, fps, scales) -> padded float64 tensors."""
    T, B = max(len(c.edge) for c in clips), len(clips)
    x = np.zeros((B, T, 17, 2))
    sc = np.zeros((B, T, 17))
    v = np.zeros((B, T), bool)
    ref = np.full((B, T, 17, 2), np.nan)
    scale, dt = np.ones((B, T)), np.ones((B, T))
    for i, c in enumerate(clips):
        n = len(c.edge)
        x[i, :n] = np.nan_to_num(c.edge)
        sc[i, :n] = np.nan_to_num(c.scores)
        v[i, :n] = np.isfinite(c.edge).all(axis=(1, 2))
        ref[i, :n] = c.teacher
        scale[i, :n] = c.scales
        dt[i] = 1.0 / c.fps
    return [torch.tensor(a) for a in (x, sc, v, scale, dt, ref)]


def track_loss(y, ref, valid, accel_weight: float):
    """(loss, position L2, acceleration L2) in px, over frames with a reference."""
    m = torch.isfinite(ref).all(-1) & valid[..., None]
    r = torch.nan_to_num(ref)
    pos = ((y - r).norm(dim=-1) * m).sum() / m.sum()
    acc_p = y[:, 2:] - 2 * y[:, 1:-1] + y[:, :-2]
    acc_r = r[:, 2:] - 2 * r[:, 1:-1] + r[:, :-2]
    ma = m[:, 2:] & m[:, 1:-1] & m[:, :-2]
    acc = ((acc_p - acc_r).norm(dim=-1) * ma).sum() / ma.sum()
    return pos + accel_weight * acc, pos, acc


def segments(clips, cfg: GainConfig) -> list:
    out = []
    for c in clips:
        for s0 in range(0, len(c.edge), cfg.stride):
            sl = slice(s0, s0 + cfg.segment)
            out.append(replace(c, edge=c.edge[sl], scores=c.scores[sl], teacher=c.teacher[sl], scales=c.scales[sl]))
    return [s for s in out if len(s.edge) > 16]


def triangular_lag(y: torch.Tensor, valid: torch.Tensor, delay: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed-lag triangular stage over causal outputs ``y`` (B, T, 17, 2): frame t's estimate is
    the centred (2d+1)-tap triangular average of y(t-d .. t+d) (what
    :class:`~edgepose.video.one_euro.FixedLagOneEuro` ``"triangular"`` emits inside a segment).
    Returns (z (B, T, 17, 2), valid (B, T)): frames without their whole window in ``valid`` are
    left out (valid False) rather than approximated."""
    if delay == 0:
        return y, valid
    from edgepose.video.one_euro import triangular_weights

    w = torch.as_tensor(triangular_weights(delay), dtype=y.dtype)
    n = y.shape[1]
    z = torch.zeros_like(y)
    ok = torch.zeros_like(valid)
    core = slice(delay, n - delay)
    acc = 0.0
    okc = torch.ones_like(valid[:, core])
    for i in range(2 * delay + 1):
        sl = slice(i, n - 2 * delay + i)
        acc = acc + w[i] * y[:, sl]
        okc = okc & valid[:, sl]
    z[:, core] = acc
    ok[:, core] = okc
    return z, ok


class GainLoss(torch.nn.Module):
    """Track loss of the learned-gain One Euro unrolled over a batch (a loss module)."""

    def __init__(self, net: GainNet, config: OneEuroConfig, delay: int, accel_weight: float):
        super().__init__()
        self.net, self.config, self.delay, self.accel_weight = net, config, delay, accel_weight

    def forward(self, batch) -> dict[str, torch.Tensor]:
        x, sc, v, scale, dt, ref = batch
        z, ok = triangular_lag(unroll(self.net, x, sc, v, scale, dt, self.config), v, self.delay)
        _, pos, acc = track_loss(z, ref, ok, self.accel_weight)
        return {"pos": pos, "accel": self.accel_weight * acc, "_acc": acc.detach()}


def train_gain(clips, cfg: GainConfig = GainConfig(), progress: bool = True, *,
               config: OneEuroConfig = OneEuroConfig(), delay: int = 0) -> tuple[GainNet, list[dict]]:
    """Train on ``clips`` (:class:`~edgepose.compression.temporal.baselines.TuneClip`); deterministic.

    ``config``: the One Euro parameters the gains multiply (untrained: exactly that filter).
    ``delay``: 0 trains the zero-lag filter; d > 0 trains it as the causal stage of a fixed-lag
    triangular smoother (:func:`triangular_lag`), the loss taken on the delayed output.
    """
    from ..train import Trainer, TrainerConfig

    torch.manual_seed(cfg.seed)
    net = GainNet(cfg.hidden, cfg.body).double()
    segs = segments(clips, cfg)
    rng = np.random.default_rng(cfg.seed)

    def draw(step):
        idx = rng.choice(len(segs), size=min(cfg.batch, len(segs)), replace=False)
        return to_batch([segs[i] for i in idx])

    tcfg = TrainerConfig(steps=cfg.steps, batch_size=cfg.batch, lr=cfg.lr, weight_decay=0.0, optimizer="adam",
                         schedule="constant", grad_clip=0.0, seed=cfg.seed, device="cpu", channels_last=False,
                         check_finite=False, progress=progress, desc="learned gain")
    res = Trainer(GainLoss(net, config, delay, cfg.accel_weight), draw, tcfg).fit()
    history = [{"step": h["step"] - 1, "loss": h["loss"], "pos": h["pos"], "acc": h["_acc"]} for h in res.history
               if (h["step"] - 1) % 25 == 0 or h["step"] == cfg.steps]
    return net, history


def export_gain(net: GainNet, path, *, config: OneEuroConfig = OneEuroConfig(), meta: dict | None = None) -> str:
    """Write the network as ONNX (input ``features`` (1, 17, 5) float32, or (1, 17, 7) for a
    ``body`` network, output ``gain``) with metadata."""
    import onnx

    net = net.float().eval()
    torch.onnx.export(net, (torch.zeros(1, 17, net.n_features),), str(path), input_names=["features"],
                      output_names=["gain"], opset_version=17, dynamo=False)
    model = onnx.load(str(path))
    entries = {"edgepose.kind": "learned-gain-one-euro", "edgepose.one_euro": json.dumps(asdict(config)),
               "edgepose.features": json.dumps(BODY_FEATURES if net.body else FEATURES), **{f"edgepose.{k}": json.dumps(v) for k, v in (meta or {}).items()}}
    for k, v in entries.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(model, str(path))
    net.double()
    return str(path)


#: Clip-name prefixes held out for selection (benchmarks/zero_lag_selection.py of T3/T4); the
#: mmskeleton two left the training list in L1 and match nothing now (kept: the recorded recipe).
HELD_OUT = ("resource_data_example_ta_chi", "notebooks_videos_bedroom", "resource_data_example_clean_and_jerk",
            "sports2d_demo", "demo_data_gallery_05_default_juggle")
#: The shipped models: name -> (training settings, One Euro base, delay).
SHIPPED = {"gain_one_euro": (GainConfig(accel_weight=1.5, steps=600, seed=0), OneEuroConfig(), 0),
           "gain_fixed_lag_d2": (GainConfig(accel_weight=16.0, steps=600, seed=0), OneEuroConfig(4.0, 0.0, 0.5), 2)}


def main(argv=None) -> int:
    """Retrain one shipped learned-gain model on the training clips (deterministic)."""
    from .baselines import load_clips

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(SHIPPED), required=True)
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--cache-dir", default="runs/temporal_tracks")
    p.add_argument("--assets", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    cfg, base, delay = SHIPPED[a.model]
    train = [c for c in load_clips(a.cache_dir, assets=a.assets) if not c.name.startswith(HELD_OUT)]
    log.info("%s: %d training clips", a.model, len(train))
    net, _ = train_gain(train, cfg, progress=False, config=base, delay=delay)
    meta = ({"train": {**cfg.__dict__, "clips": len(train), "held_out": list(HELD_OUT)}} if delay == 0 else
            {"delay": delay, "train": cfg.__dict__})
    export_gain(net, a.out, config=base, meta=meta)
    log.info("wrote %s", a.out)
    return 0


__all__ = ["GainConfig", "GainNet", "unroll", "to_batch", "track_loss", "triangular_lag", "GainLoss", "train_gain", "export_gain", "HELD_OUT", "SHIPPED"]


if __name__ == "__main__":
    raise SystemExit(main())
