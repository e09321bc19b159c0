"""More before / after runs for ``train_agreement.py`` (kept apart for the 500-line rule).

Each ``run_*(pkg, labels, steps)`` runs one former loop when ``pkg`` is ``oldcompression`` (the
package at the old revision) and the current code when it is ``edgepose.compression``; both see
the same data, seed and step count. Besides losses they return ``params``: the trained weights,
flattened (the JSON keeps only their difference). The former temporal modules import their
models, windows and data through absolute ``edgepose.compression.temporal`` names, i.e. today's:
those runs compare the training loops.

* ``okdhp``: OKDHP (two unbalanced branches + FAU) through ``train_student.train``, the former
  ``benchmarks/students_ablation.py`` path; held-out: the validation losses and each branch's
  loss (``OKDHP.branch_losses``).
* ``okdhp_recipe``: the same former loop against what ``edgepose compress --method okdhp`` runs
  now (``train.recipes.build`` + ``Trainer``), same schedule written as a recipe;
  ``okdhp_recipe_workers``: the same with 2 DataLoader workers (the shipped okdhp recipe's setting).
* ``dkd_clips`` / ``dkd_clips_per_frame``: DKD's clip phase ``train_dkd`` (kernels on, and the
  per-frame arm) on a :class:`ClipSet` built in memory from the label crops (frames cycled,
  segments of 6); held-out: its heatmap KD over the held-out segment.
* ``dkd_recipe``: the former order (``pretrain_frames`` then ``train_dkd``) against the ``dkd``
  recipe's two phases (``train_dkd_recipe``, ``collect_clips`` swapped for the same ClipSet);
  training losses of both phases, held-out heatmap KD measured the same way on both models.
* ``gain``: the learned-gain One Euro (``temporal.gain.train_gain``) on synthetic tracks; the
  former loop logs every 25th step, so ``train`` holds those (at least 51 steps); held-out: the
  track loss of the trained filter on a synthetic clip it never saw.
* ``smoother``: the temporal smoother (``temporal.train.train``, SmoothNet kind, small net) with
  ``collect_pairs`` swapped for synthetic track pairs (the training video list is not read);
  per-step training loss and the held-out losses (``seq_loss`` recorded in both loops);
  ``recovery``: the same for the keyframe recovery model.
* ``fixed_lag_fir``: the learned fixed-lag FIR taps (``temporal.fixed_lag_fir.train_fir``, full
  batch, delay 2, prior+raw) on synthetic tracks; the loop logs only the first and last step's
  loss (``train``; ``terms``: their position / acceleration parts; nothing is held out) and
  ``params`` are the taps.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import torch

OLD = "oldcompression"
CLIP_FRAMES, CLIP_SEGMENT = 30, 6  # in-memory ClipSet: frames (label crops cycled), frames per segment


def _flat(module) -> list[float]:
    return torch.cat([p.detach().reshape(-1).double() for p in module.parameters()]).tolist()


def _okdhp_setup(pkg: str, labels, steps: int):
    from edgepose.compression.students import StudentConfig

    ts = importlib.import_module(f"{pkg}.train_student")
    ok = importlib.import_module(f"{pkg}.distill.okdhp")
    scfg = StudentConfig(input_size=128, width=0.5)
    ocfg = dict(branches=((1.0, 1.0), (0.5, 0.5)), w_spatial=0.1)
    cls = getattr(ts, "StudentTrainConfig", None) or ts.TrainConfig  # renamed after the move
    tcfg = cls(steps=steps, batch_size=8, warmup=2, eval_every=max(1, steps // 2), threads=1)
    std = np.asarray(scfg.std, np.float32)
    return ts, ok, scfg, ocfg, tcfg, 1 / std, -np.asarray(scfg.mean, np.float32) / std


def _branch_val(net, ts, tcfg, labels, scale, shift) -> list[float]:
    _, va = ts.make_datasets(labels, tcfg, input_size=128, scale=scale, shift=shift)
    return net.branch_losses(torch.utils.data.DataLoader(va, batch_size=8))


def run_okdhp(pkg: str, labels, steps: int) -> dict:
    ts, ok, scfg, ocfg, tcfg, scale, shift = _okdhp_setup(pkg, labels, steps)
    ts.seed_everything(0)
    net = ok.OKDHP(scfg, ok.OKDHPConfig(**ocfg))
    rep = ts.train(net, labels, tcfg, input_size=128, scale=scale, shift=shift, progress=False)
    return {"train": rep.train, "val": rep.val, "branch_val": _branch_val(net, ts, tcfg, labels, scale, shift),
            "params": _flat(net)}


def run_okdhp_recipe(pkg: str, labels, steps: int, workers: int = 0) -> dict:
    if pkg == OLD:
        return run_okdhp(pkg, labels, steps)
    from edgepose.compression.train import Trainer
    from edgepose.compression.train.recipes import Recipe, build

    ts, _, _, _, tcfg, scale, shift = _okdhp_setup(pkg, labels, steps)
    sched = dict(steps=steps, batch_size=8, lr=2e-3, weight_decay=1e-4, warmup=2, grad_clip=5.0, threads=1,
                 eval_every=max(1, steps // 2), eval_at_start=True, channels_last=True, workers=workers)
    rec = Recipe(name="agreement-okdhp", method="okdhp", model={"head": "heatmap", "input_size": 128, "width": 0.5},
                 teacher="", data={"val_fraction": 0.1}, schedule=sched,
                 options={"branches": [[1.0, 1.0], [0.5, 0.5]], "w_spatial": 0.1}, seed=0)
    module, tr, va, save, params = build(rec, labels, assets=None)
    res = Trainer(module, tr, rec.trainer_config(device="cpu", progress=False), val_data=va, params=params).fit()
    return {"train": [h["loss"] for h in res.history], "val": [v["loss"] for v in res.val],
            "branch_val": _branch_val(module, ts, tcfg, labels, scale, shift), "params": _flat(module)}


def clip_set(labels, n: int = CLIP_FRAMES, seg: int = CLIP_SEGMENT, size: int = 128):
    """A DKD ClipSet in memory: label crops (cycled) at ``size``, their teacher maps at size / 4."""
    import cv2

    from edgepose.compression.distill.dkd import ClipSet

    idx = [i % len(labels) for i in range(n)]
    imgs = np.stack([cv2.resize(labels.image(i), (size, size), interpolation=cv2.INTER_AREA) for i in idx])
    ms = size // 4
    maps = np.stack([cv2.resize(np.ascontiguousarray(labels.maps[i, :17].transpose(1, 2, 0)), (ms, ms),
                                interpolation=cv2.INTER_AREA).transpose(2, 0, 1) for i in idx])
    return ClipSet(imgs, np.ascontiguousarray(maps), labels.keypoints[idx].astype(np.float32),
                   np.arange(n, dtype=np.int64) // seg, [labels.sources[i] for i in idx])


def _held_out_kd(model, clips, per_frame: bool = False) -> float:
    """train_dkd's held-out measure (heatmap KD over the held-out segment's clips), current code."""
    from edgepose.compression.distill.dkd import ClipDataset, _predict
    from edgepose.compression.distill.vitkd import heatmap_kd
    from edgepose.compression.data.augment import AugmentConfig
    from edgepose.compression.students.vit import MEAN, STD

    starts = clips.clip_starts(3)
    segs = np.unique(clips.segment)
    val_segs = set(np.random.default_rng(0).permutation(segs)[: max(1, int(len(segs) * 0.1))])
    is_val = np.array([clips.segment[s] in val_segs for s in starts])
    ds = ClipDataset(clips, starts[is_val][::3], length=3, augment_cfg=AugmentConfig.none(), mean=MEAN, std=STD)
    model.eval()
    with torch.no_grad():
        return float(np.mean([float(heatmap_kd(_predict(model, b["clip"], per_frame), b["maps"]))
                              for b in torch.utils.data.DataLoader(ds, batch_size=16)]))


def _dkd_clips(pkg: str, labels, steps: int, per_frame: bool) -> dict:
    from edgepose.compression.students.dkd_model import DKDConfig, DKDPose

    m = importlib.import_module(f"{pkg}.distill.dkd")
    torch.manual_seed(0)
    model = DKDPose(DKDConfig())
    clips = clip_set(labels)
    rep = m.train_dkd(model, clips, m.DKDTrainConfig(steps=steps, batch_size=4, warmup=2, threads=1,
                                                     per_frame=per_frame), progress=False)
    return {"train": rep.train, "val": rep.val, "params": _flat(model)}


def run_dkd_clips(pkg: str, labels, steps: int) -> dict:
    return _dkd_clips(pkg, labels, steps, False)


def run_dkd_clips_per_frame(pkg: str, labels, steps: int) -> dict:
    return _dkd_clips(pkg, labels, steps, True)


def run_dkd_recipe(pkg: str, labels, steps: int) -> dict:
    from edgepose.compression.students.dkd_model import DKDConfig, DKDPose

    clips, pre = clip_set(labels), max(1, steps // 2)
    if pkg == OLD:
        m = importlib.import_module(f"{pkg}.distill.dkd")
        torch.manual_seed(0)
        model = DKDPose(DKDConfig())
        r0 = m.pretrain_frames(model, labels, steps=pre, batch_size=8, threads=1, progress=False)
        r1 = m.train_dkd(model, clips, m.DKDTrainConfig(steps=steps, batch_size=4, warmup=2, threads=1),
                         progress=False)
        train = r0.train + r1.train
    else:
        from edgepose.compression.distill import dkd
        from edgepose.compression.train.dkd_recipe import train_dkd_recipe
        from edgepose.compression.train.recipes import Recipe

        rec = Recipe(name="agreement-dkd", method="dkd", model={}, teacher="", data={},
                     schedule=dict(steps=steps, batch_size=4, lr=2e-3, weight_decay=1e-4, warmup=2, grad_clip=5.0,
                                   threads=1),
                     options={"pretrain_steps": pre, "pretrain_batch_size": 8}, seed=0)
        pre_hist = []
        orig_collect, orig_fit = dkd.collect_clips, _trainer_fit()
        dkd.collect_clips = lambda *a, **k: clips
        _trainer_fit(lambda self, *a, **k: _record(orig_fit(self, *a, **k), pre_hist))
        try:
            res, model = train_dkd_recipe(rec, labels, None, tcfg=rec.trainer_config(device="cpu", progress=False),
                                          tr_idx=np.arange(len(labels)), va_idx=np.arange(min(2, len(labels))),
                                          videos=[], teacher="", detector="", cache="", progress=False)
        finally:
            dkd.collect_clips = orig_collect
            _trainer_fit(orig_fit)
        train = pre_hist[0] + pre_hist[1]
    return {"train": train, "val": [_held_out_kd(model, clips)], "params": _flat(model)}


def _trainer_fit(fn=None):
    """Trainer.fit (get, or set to ``fn``): the dkd recipe's per-phase histories are read through it."""
    from edgepose.compression.train.trainer import Trainer

    if fn is None:
        return Trainer.fit
    Trainer.fit = fn


def _record(res, out: list):
    out.append([h["loss"] for h in res.history])
    return res


@dataclass
class _Clip:  # the fields train_gain reads (TuneClip's), without importing the training video list
    name: str
    edge: np.ndarray
    scores: np.ndarray
    teacher: np.ndarray
    fps: float
    scales: np.ndarray


def _synthetic_track(rng, n: int) -> np.ndarray:
    """(n, 17, 2) px: a pose drifting and swinging (sums of sines), like a person in a 640x480 frame."""
    t = np.arange(n)[:, None, None] / 30.0
    base = rng.uniform(200, 400, (1, 17, 2))
    amp, freq, ph = rng.uniform(5, 40, (1, 17, 2)), rng.uniform(0.2, 2.0, (1, 17, 2)), rng.uniform(0, 6.3, (1, 17, 2))
    return base + amp * np.sin(2 * np.pi * freq * t + ph) + 30 * np.sin(0.3 * t)


def gain_clips(seed: int, count: int, n: int = 160) -> list[_Clip]:
    rng = np.random.default_rng(seed)
    out = []
    for c in range(count):
        ref = _synthetic_track(rng, n)
        edge = ref + rng.normal(0, 3, ref.shape)
        edge[rng.random(n) < 0.03] = np.nan  # a few lost frames
        out.append(_Clip(f"synthetic{c}", edge, rng.uniform(0.3, 1.0, (n, 17)), ref, 30.0, np.full(n, 200.0)))
    return out


def run_gain(pkg: str, labels, steps: int) -> dict:
    m = importlib.import_module(f"{pkg}.temporal.gain")
    steps = max(steps, 51)  # the former loop logs steps 0, 25, 50, ... and the last
    cfg = m.GainConfig(steps=steps, batch=4, segment=48, stride=40, seed=0)
    net, hist = m.train_gain(gain_clips(0, 3), cfg, progress=False)
    from edgepose.compression.temporal.gain import to_batch, track_loss, unroll
    from edgepose.video.one_euro import OneEuroConfig

    with torch.no_grad():
        x, sc, v, scale, dt, ref = to_batch(gain_clips(1, 1))
        held = track_loss(unroll(net, x, sc, v, scale, dt, OneEuroConfig()), ref, v, cfg.accel_weight)
    return {"steps": steps, "train": [h["loss"] for h in hist], "val": [float(a) for a in held], "params": _flat(net)}


@dataclass
class _Pair:  # temporal.data.Pair's fields
    name: str
    edge: object
    teacher: object

    @property
    def fps(self) -> float:
        return self.teacher.fps


def smoother_pairs() -> list[_Pair]:
    from edgepose.eval.temporal import Track

    rng = np.random.default_rng(0)
    out = []
    for name in ("synthetic_a", "synthetic_b", "resource_data_example_ta_chi"):  # the last: a val_clips prefix
        ref = _synthetic_track(rng, 120)
        edge = ref + rng.normal(0, 3, ref.shape)
        conf = np.full((120, 17), 0.8, np.float32)
        out.append(_Pair(name, *(Track(k.astype(np.float32), conf, 30.0, np.arange(120)) for k in (edge, ref))))
    return out


def run_smoother(pkg: str, labels, steps: int, kind: str = "smoother") -> dict:
    from edgepose.compression.temporal.models import TemporalNetConfig

    m = importlib.import_module(f"{pkg}.temporal.train")
    cls = getattr(m, "TemporalTrainConfig", None) or m.TrainConfig  # renamed after the move
    cfg = cls(kind=kind, net=TemporalNetConfig(window=16, hidden=16, blocks=1), steps=steps, batch=8,
              emit_frames=4, max_delay=4, seed=0)
    train, val = [], []
    orig_pairs, orig_loss = m.collect_pairs, m.seq_loss

    def seq_loss(model, batch, accel_weight, *, identity=False):
        out = orig_loss(model, batch, accel_weight, identity=identity)
        if not identity:
            (train if torch.is_grad_enabled() else val).append(float(out[0].detach()))
        return out

    m.collect_pairs, m.seq_loss = (lambda *a, **k: smoother_pairs()), seq_loss
    try:
        model, _ = m.train(cfg, **({} if pkg == OLD else {"device": "cpu"}))
    finally:
        m.collect_pairs, m.seq_loss = orig_pairs, orig_loss
    return {"train": train, "val": val, "params": _flat(model)}


def _old_fir_module():
    """The former ``temporal.fixed_lag_fir``: it imports two modules that moved since (the learned
    fixed-lag taps, now ``compression.temporal.learned_fixed_lag``, and ``one_euro_track`` /
    ``fixed_lag_from_forward``, now in ``edgepose.video.tracks``); they are lent under the old names
    while it is imported (the training loop is the former one)."""
    import sys

    import edgepose.eval.temporal_report as tr
    import edgepose.video.tracks as tracks
    from edgepose.compression.temporal import learned_fixed_lag

    name = "edgepose.video.learned_fixed_lag"
    sys.modules[name] = learned_fixed_lag
    tr.fixed_lag_from_forward, tr.one_euro_track = tracks.fixed_lag_from_forward, tracks.one_euro_track
    try:
        return importlib.import_module(f"{OLD}.temporal.fixed_lag_fir")
    finally:
        del sys.modules[name], tr.fixed_lag_from_forward, tr.one_euro_track


def run_fixed_lag_fir(pkg: str, labels, steps: int) -> dict:
    from edgepose.compression.temporal.fixed_lag_fir import prepare
    from edgepose.video.one_euro import OneEuroConfig

    m = _old_fir_module() if pkg == OLD else importlib.import_module(f"{pkg}.temporal.fixed_lag_fir")
    steps = max(steps, 2)
    clips = prepare(gain_clips(2, 3), OneEuroConfig(), 2)
    taps, log = m.train_fir(clips, OneEuroConfig(), 2, m.FirConfig(inputs="prior+raw", steps=steps))
    return {"steps": steps, "train": [log["loss_first"][0], log["loss_last"][0]],
            "terms": [*log["loss_first"][1:], *log["loss_last"][1:]], "params": [*taps.prior, *taps.raw]}


RUNS = {"okdhp": run_okdhp, "okdhp_recipe": run_okdhp_recipe,
        "okdhp_recipe_workers": lambda pkg, labels, steps: run_okdhp_recipe(pkg, labels, steps, workers=2),
        "dkd_clips": run_dkd_clips,
        "dkd_clips_per_frame": run_dkd_clips_per_frame, "dkd_recipe": run_dkd_recipe, "gain": run_gain,
        "smoother": run_smoother, "recovery": lambda pkg, labels, steps: run_smoother(pkg, labels, steps, "recovery"),
        "fixed_lag_fir": run_fixed_lag_fir}
