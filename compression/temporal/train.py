"""Train the learned smoother and the keyframe recovery model on teacher tracks; export to ONNX.

Inputs are the edge model's tracks (MoveNet Lightning int8, what the runtime smooths), targets
the teacher's (MoveNet Thunder fp32) on the same licence-clean training frames
(:mod:`edgepose.compression.temporal.data`). Loss: position L1 + acceleration L1
(SmoothNet), both in units of the person's size.

    python -m edgepose.compression.temporal.train --kind smoother --out edgepose/data/smoothnet_w32.onnx
    python -m edgepose.compression.temporal.train --kind recovery --out edgepose/data/keyframe_recovery_w32.onnx
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from edgepose.compression.temporal.data import collect_pairs
from edgepose.compression.temporal.models import TemporalNetConfig, build
from edgepose.compression.temporal.windows import (WindowBank, batch_channels, batch_scale,
                                                   build_sequences, interp_matrix)
from edgepose.video._temporal import MIN_SCALE, frame_side, one_euro_batch
from edgepose.video.one_euro import OneEuroConfig
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TemporalTrainConfig:
    """Training recipe of a temporal model.

    Attributes:
        kind: ``"smoother"`` or ``"recovery"``.
        net: network size.
        steps: optimiser steps; 2000 steps of 64 x 16 windows took ~25 min on a shared 2-core
            machine (the validation loss had flattened by then).
        batch: sequences per step (each gives emit_frames or emit_windows windows of 34
            channel signals).
        lr: AdamW peak learning rate of a one-cycle schedule (5 % warm-up, cosine to ~0).
        weight_decay: AdamW weight decay.
        accel_weight: weight of the acceleration L1 against the position L1 (SmoothNet uses 1).
        start_pad_prob: fraction of windows that imitate a stream start (left replicate padding).
        emit_frames: smoother: the loss is taken on the sequence of frames the online smoother
            emits from this many consecutive windows (so the acceleration across windows, what
            a viewer sees, is what is trained), not inside one window.
        zero_lag_prob: smoother: each batch trains one delay d (the output position T-1-d):
            0 with this probability (zero lag is the hardest and most used), else uniform in
            1..max_delay, so one model serves every delay up to the offline mode's.
        max_delay: smoother: the largest delay trained; T/2 is the offline mode (centred
            windows). Spreading the capacity over all T positions cost zero-lag quality.
        keyframe_intervals: recovery: the k values trained (one model serves all).
        emit_windows: recovery: the loss is taken on the frames emitted by this many
            consecutive keyframe windows (k each), acceleration across windows included.
        val_clips: clip-name prefixes held out for validation. ``resource_data_example_ta_chi``
            (mmskeleton) left the training list (docs/research-notes.md L1) and matches nothing
            now; it stays in the default so the recipe recorded in the shipped models is unchanged.
        seed: RNG seed.
        prior: smoother: a :class:`PriorSmoothNet` fed the causal One Euro output (``prefilter``)
            beside the raw track; it starts as that filter and learns a correction. Meant for
            zero lag (``max_delay=0``), where a plain SmoothNet did not beat One Euro.
        prefilter: the One Euro parameters of that input (person size = each frame's pose box).
        score_input: with ``prior``: the keypoint scores are a third input (uncertainty).
        loss_units: smoother: ``"size"`` (errors divided by each sequence's person size, every
            person counts alike) or ``"px"`` (errors in units of 100 px: large people weigh
            more, as in the pooled pixel metrics of ``edgepose eval-video``).
    """

    kind: str = "smoother"
    net: TemporalNetConfig = field(default_factory=TemporalNetConfig)
    steps: int = 2000
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    accel_weight: float = 1.0
    start_pad_prob: float = 0.15
    emit_frames: int = 8
    zero_lag_prob: float = 0.3
    max_delay: int = 16
    keyframe_intervals: tuple[int, ...] = (2, 3, 4, 5, 6)
    emit_windows: int = 3
    val_clips: tuple[str, ...] = ("resource_data_example_ta_chi", "notebooks_videos_bedroom")
    seed: int = 0
    prior: bool = False
    prefilter: OneEuroConfig = field(default_factory=OneEuroConfig)
    score_input: bool = False
    loss_units: str = "size"

    def __post_init__(self):
        if self.kind not in ("smoother", "recovery"):
            raise ConfigError(f"TemporalTrainConfig.kind must be 'smoother' or 'recovery', got {self.kind!r}")
        if self.steps < 1 or self.batch < 1:
            raise ConfigError("TemporalTrainConfig.steps and batch must be >= 1")
        if not 0 <= self.max_delay < self.net.window:
            raise ConfigError(f"TemporalTrainConfig.max_delay must be in [0, window), got {self.max_delay!r}")
        if self.loss_units not in ("size", "px"):
            raise ConfigError(f"TemporalTrainConfig.loss_units must be 'size' or 'px', got {self.loss_units!r}")
        if self.score_input and not self.prior:
            raise ConfigError("TemporalTrainConfig.score_input needs prior=True")
        if self.prior and self.kind != "smoother":
            raise ConfigError("TemporalTrainConfig.prior (One Euro prefilter input) is only for kind='smoother'")
        if self.max_delay == 0 and self.zero_lag_prob != 1.0:
            raise ConfigError("TemporalTrainConfig.max_delay=0 trains zero lag only: set zero_lag_prob=1.0")
        if any(k < 2 or k >= self.net.window for k in self.keyframe_intervals):
            raise ConfigError(f"TemporalTrainConfig.keyframe_intervals must be in [2, window), got "
                             f"{self.keyframe_intervals!r}")


class RecoveryBatcher:
    """Recovery batches: sequences covering M consecutive keyframe windows (window T ending at
    a keyframe, keyframes every k frames), normalised as the runtime does; the loss is taken on
    the M x k frames the online recovery emits (each window's newest interval)."""

    def __init__(self, bank: WindowBank, cfg: TemporalTrainConfig, rng: np.random.Generator):
        self.bank, self.cfg, self.rng = bank, cfg, rng
        t = cfg.net.window
        self.interp = {}
        for k in cfg.keyframe_intervals:
            n_kf = len(range(t - 1, -1, -k))
            mats, masks = zip(*[interp_matrix(t, k, n) for n in range(1, n_kf + 1)])
            self.interp[k] = (np.stack(mats), np.stack(masks))

    def draw(self, n: int | None = None, idx: np.ndarray | None = None, k: int | None = None):
        cfg, rng, t, m_win = self.cfg, self.rng, self.cfg.net.window, self.cfg.emit_windows
        if idx is None:
            idx = rng.integers(0, len(self.bank), n or cfg.batch)
        k = int(rng.choice(cfg.keyframe_intervals)) if k is None else k
        edge, teach, _ = self.bank.gather(idx)
        span = t + (m_win - 1) * k
        edge, teach = edge[:, -span:], teach[:, -span:]
        b = len(idx)
        sign = np.where(rng.random((b, 1, 1, 2)) < 0.5, -1.0, 1.0)
        edge, teach = edge * sign, teach * sign
        mats, masks = self.interp[k]
        n_kf = len(mats)
        n_real = np.full(b, n_kf)
        pad = rng.random(b) < cfg.start_pad_prob
        n_real[pad] = rng.integers(1, n_kf + 1, pad.sum())
        ends = span - 1 - (m_win - 1 - np.arange(m_win)) * k  # window end frames
        first_real = ends[0] - (n_real - 1) * k  # (B,) first real keyframe frame
        wins = np.stack([edge[:, e - t + 1:e + 1] for e in ends], axis=1)  # (B, M, T, 17, 2)
        which = np.minimum(n_real[:, None] + np.arange(m_win)[None], n_kf) - 1  # (B, M)
        interp = np.einsum("bmts,bmsjc->bmtjc", mats[which], wins).reshape(b * m_win, t, 17, 2)
        mask = masks[which].reshape(b * m_win, t)
        scale = _kf_scale(interp, mask)
        xi, center = batch_channels(interp, scale)
        x = np.stack([xi, np.broadcast_to(mask[:, None, :], xi.shape)], axis=2)  # (BM, 34, 2, T)
        emit = (ends[:, None] - k + 1 + np.arange(k)[None]).reshape(-1)  # (M*k,) frames
        valid = (emit[None] >= first_real[:, None]).astype(float)
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return {"x": f(x.reshape(-1, 2, t)), "pos": list(range(t - k, t)),
                "scale": f(scale.reshape(b, m_win, 1)), "center": f(center.reshape(b, m_win, -1)),
                "seq_scale": f(batch_scale(edge).reshape(b, 1, 1)),
                "tgt": f(teach[:, emit].reshape(b, len(emit), -1)),
                "inp": f(interp.reshape(b, m_win, t, -1)[:, :, t - k:].reshape(b, len(emit), -1)),
                "valid": f(valid)}


class SeqBatcher:
    """Smoother batches: sequences of T + L - 1 frames, cut into the L windows the online
    smoother would see, each normalised on its own exactly as the runtime does."""

    def __init__(self, bank: WindowBank, cfg: TemporalTrainConfig, rng: np.random.Generator):
        self.bank, self.cfg, self.rng = bank, cfg, rng

    def draw(self, n: int | None = None, idx: np.ndarray | None = None, delay: int | None = None):
        cfg, rng = self.cfg, self.rng
        t, L = cfg.net.window, cfg.emit_frames
        if idx is None:
            idx = rng.integers(0, len(self.bank), n or cfg.batch)
        edge, teach, conf = self.bank.gather(idx)  # (B, T+L-1, 17, 2), (B, T+L-1, 17)
        b = len(idx)
        sign = np.where(rng.random((b, 1, 1, 2)) < 0.5, -1.0, 1.0)
        edge, teach = edge * sign, teach * sign
        if delay is None:
            d = 0 if rng.random() < cfg.zero_lag_prob else int(rng.integers(1, cfg.max_delay + 1))
        else:
            d = delay
        emit = np.arange(L) + t - 1 - d  # emitted frame of each window, in sequence frames
        valid = np.ones((b, L))
        for i in np.nonzero(rng.random(b) < cfg.start_pad_prob)[0]:
            p0 = int(rng.integers(1, t + L - 1))
            edge[i, :p0] = edge[i, p0]
            conf[i, :p0] = conf[i, p0]
            valid[i] = emit >= p0
        rows = np.arange(L)[:, None] + np.arange(t)[None]  # (L, T)
        wins = edge[:, rows].reshape(b * L, t, 17, 2)
        scale = batch_scale(wins)
        x, center = batch_channels(wins, scale)
        if cfg.prior:  # the causal One Euro over the whole sequence (a padded start restarts it)
            pre = one_euro_batch(edge, 1.0 / self.bank.fps[idx], frame_side(edge), cfg.prefilter)
            xp, _ = batch_channels(pre[:, rows].reshape(b * L, t, 17, 2), scale, center)
            chans = [xp, x]
            if cfg.score_input:  # (BL, 34, T): each joint's score on its x and y channels
                chans.append(np.repeat(conf[:, rows].reshape(b * L, t, 17).transpose(0, 2, 1), 2, axis=1))
            x = np.stack(chans, axis=2)  # (BL, 34, K, T)
        seq_scale = batch_scale(edge) if cfg.loss_units == "size" else np.full(b, 100.0)
        tgt = teach[:, emit].reshape(b, L, -1)  # (B, L, 34)
        inp = edge[:, emit].reshape(b, L, -1)
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return {"x": f(x.reshape((-1, x.shape[2], t) if cfg.prior else (-1, t))), "pos": [t - 1 - d],
                "scale": f(scale.reshape(b, L, 1)),
                "center": f(center.reshape(b, L, -1)), "seq_scale": f(seq_scale.reshape(b, 1, 1)),
                "tgt": f(tgt), "inp": f(inp), "valid": f(valid)}


def seq_loss(model, batch, accel_weight: float, *, identity: bool = False):
    """Position + acceleration L1 of the emitted sequences, in units of the person's size."""
    b, n, c = batch["tgt"].shape
    if identity:  # the input itself (raw track / linear interpolation)
        px = batch["inp"]
    else:
        w, p = batch["scale"].shape[1], len(batch["pos"])
        y = model(batch["x"])[:, batch["pos"]].reshape(b, w, c, p).permute(0, 1, 3, 2)
        px = (y * batch["scale"][:, :, :, None] + batch["center"][:, :, None, :]).reshape(b, n, c)
    err = (px - batch["tgt"]) / batch["seq_scale"]
    v = batch["valid"][:, :, None]
    pos = (v * err.abs()).sum() / (v.sum() * c).clamp(min=1)
    acc = err[:, 2:] - 2 * err[:, 1:-1] + err[:, :-2]
    va = v[:, 2:] * v[:, 1:-1] * v[:, :-2]
    acc = (va * acc.abs()).sum() / (va.sum() * c).clamp(min=1)
    return pos + accel_weight * acc, pos, acc


class SeqLoss(torch.nn.Module):
    """:func:`seq_loss` as a loss module: position + weighted acceleration L1 (``_acc``: unweighted)."""

    def __init__(self, model, accel_weight: float):
        super().__init__()
        self.model, self.accel_weight = model, accel_weight

    def forward(self, batch) -> dict[str, torch.Tensor]:
        _, pos, acc = seq_loss(self.model, batch, self.accel_weight)
        return {"pos": pos, "accel": self.accel_weight * acc, "_acc": acc.detach()}


def _kf_scale(win: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Person size over the keyframes only (what the runtime sees)."""
    ext = (win.max(axis=2) - win.min(axis=2)).max(axis=2)  # (B, T)
    return np.maximum(np.nanmedian(np.where(masks > 0, ext, np.nan), axis=1), MIN_SCALE)


def train(cfg: TemporalTrainConfig, *, cache_dir: str = "runs/temporal_tracks", assets=None, device: str = "auto"):
    """Train; returns (model, dict of final train / val losses). ``device``: auto / cpu / cuda / mps."""
    from edgepose.compression.train import Trainer, TrainerConfig
    from edgepose.compression.train.data import to_device

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pairs = collect_pairs(cache_dir, assets=assets)
    seqs = build_sequences(pairs, window=cfg.net.window)
    is_val = lambda s: any(s.name.startswith(v) for v in cfg.val_clips)  # noqa: E731
    span = cfg.net.window + (cfg.emit_frames - 1 if cfg.kind == "smoother" else
                             (cfg.emit_windows - 1) * max(cfg.keyframe_intervals))
    seqs = [s for s in seqs if len(s.edge) >= span]
    tr = WindowBank([s for s in seqs if not is_val(s)], span)
    va = WindowBank([s for s in seqs if is_val(s)], span)
    log.info("%d training windows, %d validation windows", len(tr), len(va))
    model = build(cfg.kind, cfg.net, prior=cfg.prior, scores=cfg.score_input)
    smoother = cfg.kind == "smoother"
    mk = SeqBatcher if smoother else RecoveryBatcher
    bt = mk(tr, cfg, rng)
    bv = mk(va, cfg, np.random.default_rng(cfg.seed + 1))
    vidx = np.random.default_rng(cfg.seed + 2).choice(len(va), min(len(va), 512), replace=False)
    if smoother:
        vals = {f"d={d}": bv.draw(idx=vidx, delay=d) for d in sorted({0, min(4, cfg.max_delay), cfg.max_delay})}
    else:
        vals = {f"k={k}": bv.draw(idx=vidx, k=k) for k in (3, 5)}
    stats = {"train_windows": len(tr)}

    def validate(m):
        msg, tot = [], []
        for key, vb in vals.items():
            vb = to_device(vb, trainer.device)
            got = seq_loss(m.model, vb, cfg.accel_weight)
            base = seq_loss(m.model, vb, cfg.accel_weight, identity=True)
            msg.append(f"val[{key}] pos {got[1]:.4f} acc {got[2]:.4f} (input pos {base[1]:.4f} acc {base[2]:.4f})")
            stats[f"val_{key}"] = {"pos": round(float(got[1]), 5), "acc": round(float(got[2]), 5),
                                   "input_pos": round(float(base[1]), 5), "input_acc": round(float(base[2]), 5)}
            tot.append(float(got[0]))
        log.info("  ".join(msg))
        return float(np.mean(tot))

    tcfg = TrainerConfig(steps=cfg.steps, batch_size=cfg.batch, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         schedule="onecycle", onecycle_pct=0.05, grad_clip=0.0, seed=cfg.seed, device=device,
                         channels_last=False, check_finite=False, eval_every=500, progress=False,
                         desc=f"temporal {cfg.kind}")
    trainer = Trainer(SeqLoss(model, cfg.accel_weight), lambda step: bt.draw(), tcfg, validate=validate)
    trainer.fit()
    model.eval()
    return model, stats


def main(argv=None) -> int:
    from edgepose.compression.export.temporal import export_onnx

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=["smoother", "recovery"], required=True)
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--steps", type=int, default=TemporalTrainConfig.steps)
    p.add_argument("--window", type=int, default=TemporalNetConfig.window)
    p.add_argument("--hidden", type=int, default=TemporalNetConfig.hidden)
    p.add_argument("--blocks", type=int, default=TemporalNetConfig.blocks)
    p.add_argument("--batch", type=int, default=TemporalTrainConfig.batch, help="sequences per step")
    p.add_argument("--accel-weight", type=float, default=TemporalTrainConfig.accel_weight)
    p.add_argument("--emit-frames", type=int, default=TemporalTrainConfig.emit_frames)
    p.add_argument("--zero-lag-prob", type=float, default=TemporalTrainConfig.zero_lag_prob,
                   help="smoother: share of batches trained at zero delay")
    p.add_argument("--seed", type=int, default=TemporalTrainConfig.seed)
    p.add_argument("--max-delay", type=int, default=TemporalTrainConfig.max_delay,
                   help="smoother: largest delay trained (0: a zero-lag model; sets --zero-lag-prob 1)")
    p.add_argument("--prior", action="store_true",
                   help="smoother: feed the causal One Euro output beside the raw track (PriorSmoothNet)")
    p.add_argument("--score-input", action="store_true",
                   help="with --prior: the keypoint scores are an input too (uncertainty)")
    p.add_argument("--loss-units", choices=["size", "px"], default=TemporalTrainConfig.loss_units,
                   help="smoother: errors per person size (default) or in pixels (as the metrics pool them)")
    p.add_argument("--val-clips", default=",".join(TemporalTrainConfig.val_clips),
                   help="comma-separated clip-name prefixes held out for validation")
    p.add_argument("--save-torch", default=None, help="also save the torch state_dict here")
    p.add_argument("--tflite", default=None, help="also export an fp32 .tflite here (needs litert-torch)")
    p.add_argument("--cache-dir", default="runs/temporal_tracks")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    cfg = TemporalTrainConfig(kind=a.kind, steps=a.steps, accel_weight=a.accel_weight, batch=a.batch,
                      emit_frames=a.emit_frames, seed=a.seed, max_delay=a.max_delay, prior=a.prior,
                      score_input=a.score_input, loss_units=a.loss_units,
                      zero_lag_prob=1.0 if a.max_delay == 0 else a.zero_lag_prob,
                      val_clips=tuple(v for v in a.val_clips.split(",") if v),
                      net=TemporalNetConfig(window=a.window, hidden=a.hidden, blocks=a.blocks))
    model, stats = train(cfg, cache_dir=a.cache_dir)
    info = {"train": {k: v for k, v in asdict(cfg).items() if k != "net"}, **stats}
    limits = {"edgepose.max_delay": str(cfg.max_delay)} if a.kind == "smoother" else {
        "edgepose.intervals": ",".join(map(str, cfg.keyframe_intervals))}
    if cfg.prior:
        limits["edgepose.prefilter"] = json.dumps({"kind": "one_euro", **asdict(cfg.prefilter)})
    if a.save_torch:
        torch.save(model.state_dict(), a.save_torch)
    export_onnx(model, a.out, extra_metadata=info, limits=limits)
    if a.tflite:
        from edgepose.compression.export.temporal import export_tflite

        export_tflite(model, a.tflite, extra_metadata=info, limits=limits)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
