"""Progressive, latency-aware pruning of MoveNet: small steps, each distilled, stopped by the gate.

One-shot pruning of an already minimal network destroys what ~1,000 crops cannot rebuild (issue
20: ratio 0.2 at once leaves PCK 21.7). This recipe removes a little at a time instead:

1. **Latency probe** (on the target runtime, ONNX Runtime, fp32 export, this host): for each stage
   of the network (:data:`STAGES`, by feature resolution) prune ``step_ratio`` of its channel groups
   alone, export, and time every probe interleaved with the current model
   (:func:`~edgepose.compression.latency.interleaved_latency`). Only stages whose removal makes the
   measured latency fall by at least ``min_gain`` are pruned in this step (channels whose removal
   does not make the runtime faster are not worth their accuracy).
2. **Prune** those stages together (content-aware importance, rounded up to ``round_to``
   channels; Torch-Pruning's exactness guard checks every step).
3. **Distil** for ``kd_steps`` from the *unpruned* model (FPN features + all four heads) and the
   teacher's labels (Thunder maps + keypoints): :class:`~.distill.long_kd.LongKDLoss` on the one
   :class:`~.train.Trainer`, on the training crops only.
4. **Gate**: export, int8 (ORT static QDQ, folded input), score; stop after ``patience + 1``
   consecutive steps below the floor (or when no stage makes the runtime faster).

:func:`run_progressive` returns every step's point (MACs, host latency, scores) so the
PCK-vs-latency frontier and where it bends can be read off; ``edgepose compress --progressive``
adds the last step that passed the gate as a candidate.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

#: Stages of MoveNet Lightning / Thunder by ``body.layers`` index (``cNN_...``): the MobileNetV2
#: backbone by output stride, the FPN, the head towers (their final convolutions are never pruned).
STAGES: tuple[tuple[str, int, int], ...] = (
    ("stem_s2", 0, 6), ("s4", 6, 12), ("s8", 12, 21), ("s16a", 21, 33), ("s16b", 33, 42),
    ("s32", 42, 52), ("fpn", 52, 63), ("heads", 63, 74))


@dataclass(frozen=True)
class ProgressiveConfig:
    """Options of :func:`run_progressive`.

    Attributes:
        step_ratio: fraction of each chosen stage's channel groups removed per step (kept counts are
            rounded *up* to ``round_to``, so a layer narrower than ``round_to / step_ratio`` keeps all).
        round_to: SIMD width the kept counts round to (8: int8 / fp32 kernels).
        max_steps: pruning steps at most.
        kd_steps / batch_size / lr / warmup: the distillation after each step (Trainer options; a
            low rate: the pruned model is still close to the unpruned one and AdamW moves every weight;
            measured on s16a + heads pruned 10 %: int8 PCK 66.6 untrained, 49.2 after 20 steps at 2e-4
            with the Thunder task loss, 67.8 after 20 steps at 3e-5 without it).
        w_ref / w_feat / w_kd / w_task: long-KD weights (unpruned heads, unpruned FPN features,
            Thunder maps, Thunder keypoints).
        min_gain: a stage is pruned in a step only when its probe is at least this much faster
            (relative, median of an interleaved run) than the current model.
        max_stages: prune at most this many stages per step, those with the largest measured gain
            (0: every stage above ``min_gain``; measured: 15 % of six stages at once took int8 PCK
            to 39.7 after 30 KD steps).
        probe_rounds: rounds of the interleaved probe timing.
        patience: steps below the gate's floor tolerated before stopping (0: stop at the first).
        importance: pruning criterion (``content`` needs the labelled batches).
        score_fp32: also score each step's fp32 export (the int8 is the candidate; saves a scoring).
        threads: torch and runtime threads.
    """

    step_ratio: float = 0.1
    round_to: int = 8
    max_steps: int = 6
    kd_steps: int = 60
    batch_size: int = 8
    lr: float = 3e-5
    warmup: int = 5
    w_ref: float = 1.0
    w_feat: float = 1.0
    w_kd: float = 0.1
    w_task: float = 0.0
    min_gain: float = 0.01
    max_stages: int = 2
    probe_rounds: int = 8
    patience: int = 0
    importance: str = "content"
    score_fp32: bool = False
    seed: int = 0
    threads: int = 2

    def __post_init__(self):
        checks = [("step_ratio", 0.0 < self.step_ratio <= 0.5, "a fraction in (0, 0.5], e.g. 0.1"),
                  ("round_to", self.round_to >= 1, "an integer >= 1"),
                  ("max_steps", self.max_steps >= 1, "an integer >= 1"),
                  ("kd_steps", self.kd_steps >= 1, "an integer >= 1"),
                  ("min_gain", 0.0 <= self.min_gain < 1.0, "a relative gain in [0, 1)"),
                  ("probe_rounds", self.probe_rounds >= 1, "an integer >= 1"),
                  ("patience", self.patience >= 0, "an integer >= 0"),
                  ("max_stages", self.max_stages >= 0, "an integer >= 0 (0 = every stage that gains)")]
        for name, ok, valid in checks:
            if not ok:
                raise ConfigError(f"ProgressiveConfig.{name}={getattr(self, name)!r} is invalid: {valid}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepPoint:
    """One step of the recipe: what was pruned and what it scores / costs."""

    step: int
    stages: list[str]
    macs_fraction: float
    params: int
    host_ms_fp32: float | None = None
    host_ms_int8: float | None = None
    scores_fp32: dict = field(default_factory=dict)
    scores_int8: dict = field(default_factory=dict)
    probe_gain: dict = field(default_factory=dict)
    passes: bool | None = None
    seconds: float = 0.0
    phase_seconds: dict = field(default_factory=dict)
    kd_loss: float | None = None
    fp32: str = ""
    int8: str = ""


def stage_convs(net) -> dict[str, list[str]]:
    """Stage name -> the qualified names of its Conv2d modules."""
    out: dict[str, list[str]] = {s: [] for s, _, _ in STAGES}
    for name, m in net.named_modules():
        if not isinstance(m, torch.nn.Conv2d) or ".layers.c" not in name:
            continue
        idx = int(name.split(".layers.c")[1].split("_")[0])
        for s, lo, hi in STAGES:
            if lo <= idx < hi:
                out[s].append(name)
    return out


def prune_stages(net, stages: list[str], cfg: ProgressiveConfig, batches):
    """Prune ``step_ratio`` of the channel groups of ``stages`` only (every other conv ignored)."""
    from .prune import PruneConfig, prune

    convs = stage_convs(net)
    ignore = tuple(n for s, names in convs.items() if s not in stages for n in names)
    pcfg = PruneConfig(importance=cfg.importance, ratio=cfg.step_ratio, round_to=cfg.round_to, ignore=ignore)
    return prune(net, pcfg, batches=batches)


def _export(net, path: Path, crops=None) -> str:
    from .export import ExportConfig, export_onnx

    return export_onnx(net, path, ExportConfig(), compression={"progressive": path.stem},
                       check_crops=crops).path


def probe_stages(net, cfg: ProgressiveConfig, workdir: Path) -> tuple[dict[str, float], dict]:
    """Relative ORT latency gain of pruning each stage alone; and stage -> its probe's PruneResult.

    The probes rank channels by magnitude (no gradients): the latency depends on the kept counts
    only, which the rounding fixes whatever the criterion; the step itself prunes by ``cfg.importance``.
    """
    from .latency import interleaved_latency
    from .prune import count

    workdir.mkdir(parents=True, exist_ok=True)
    macs0 = count(net)[0]
    paths = {"current": _export(net, workdir / "current.onnx")}
    results = {}
    mag = replace(cfg, importance="magnitude")
    for s, _, _ in STAGES:
        try:
            r = prune_stages(net, [s], mag, None)
        except Exception as exc:  # noqa: BLE001 - a stage Torch-Pruning cannot cut is skipped, with a note
            log.warning("stage %s not prunable: %s", s, exc)
            continue
        if r.macs[1] >= macs0:  # the rounding kept every channel: nothing to gain
            continue
        results[s] = r
        paths[s] = _export(r.model, workdir / f"probe_{s}.onnx")
    if len(paths) == 1:
        return {}, results
    lat = interleaved_latency(paths, rounds=cfg.probe_rounds, per_round=5, warmup=3, threads=cfg.threads)
    # per-round ratios (each probe over the current model in the same round), median over rounds: a
    # load spike on a shared host moves one round, not the whole comparison (two medians over the run
    # gave "gains" of 13-16 % for removing 1-5 % of the MACs on the 2-core dev host)
    base = np.median(np.asarray(lat["current"].samples).reshape(cfg.probe_rounds, -1), axis=1)
    return {s: float(1.0 - np.median(np.median(np.asarray(lat[s].samples).reshape(cfg.probe_rounds, -1), axis=1)
                                     / base)) for s in results}, results


class _Data:
    """Batches of augmented training crops (the training indices only) for the Trainer."""

    def __init__(self, labels, idx, net, seed):
        from .data.augment import AugmentConfig
        from .data.dataset import PseudoLabelDataset

        self.kw = dict(out_size=net.input_size[0], scale=net.scale.flatten().numpy(),
                       shift=net.shift.flatten().numpy())
        self.train = PseudoLabelDataset(labels, idx, augment_cfg=AugmentConfig(), seed=seed, **self.kw)
        plain = PseudoLabelDataset(labels, idx[:: max(1, len(idx) // 64)], augment_cfg=AugmentConfig.none(), **self.kw)
        self.importance_batches = list(torch.utils.data.DataLoader(plain, batch_size=16))


@torch.no_grad()
def init_adapters(module, images: torch.Tensor) -> None:
    """Least-squares fit of each 1x1 feature adapter (student -> unpruned features) on one batch.

    A random adapter makes the feature loss start at ~4 and back-propagates noise into a student that
    is still almost the unpruned model (measured: PCK 68 -> 19 after 10 steps); the fitted one starts
    near the pruning's actual feature error.
    """
    module.student(images)
    module.reference(images)
    for n, a in module.adapters.items():
        xs, xt = module.s_tap.out[n], module.t_tap.out[n]
        x = xs.permute(0, 2, 3, 1).reshape(-1, xs.shape[1])
        y = xt.permute(0, 2, 3, 1).reshape(-1, xt.shape[1])
        x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1)
        w = torch.linalg.lstsq(x1, y).solution  # (cs + 1, ct)
        a.weight.copy_(w[:-1].T[:, :, None, None])
        a.bias.copy_(w[-1])


def distill_step(student, reference, data: _Data, cfg: ProgressiveConfig, out: Path) -> dict:
    """``kd_steps`` of long KD (unpruned features + heads, Thunder labels) on the Trainer."""
    from .distill.long_kd import LongKDConfig, LongKDLoss
    from .train import Trainer, TrainerConfig

    kcfg = LongKDConfig(w_ref=cfg.w_ref, w_feat=cfg.w_feat, w_kd=cfg.w_kd, w_task=cfg.w_task, seed=cfg.seed,
                        threads=cfg.threads)
    module = LongKDLoss(student, reference, kcfg)
    if module.adapters is not None:
        init_adapters(module, data.importance_batches[0]["image"])
    params = [p for p in student.parameters() if p.requires_grad]
    if module.adapters is not None:
        params += list(module.adapters.parameters())
    tcfg = TrainerConfig(steps=cfg.kd_steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup,
                         lr_floor=0.05, seed=cfg.seed, device="cpu", channels_last=False, threads=cfg.threads,
                         progress=False, desc="progressive-kd")
    res = Trainer(module, data.train, tcfg, params=params, out=out).fit()
    module.close()
    student.eval()
    return res.summary()


def run_progressive(net, labels, tr_idx, cfg: ProgressiveConfig, out: str | os.PathLike, *, score,
                    calibration, floor_ok=None, progress_log=None) -> list[StepPoint]:
    """Prune ``net`` (the unpruned model, left untouched) step by step; returns every step's point.

    Args:
        net: the imported unpruned model (also the frozen distillation reference).
        labels / tr_idx: the teacher label set and its *training* indices (never the gate's held-out ones).
        cfg: options.
        out: working folder (``step_NN/`` with the models, ``progressive.json``).
        score: ``score(path) -> {gate set: score}`` for a model file.
        calibration: uint8 training crops for the int8 calibration.
        floor_ok: ``floor_ok(scores) -> bool`` (None: never stop on the gate).
        progress_log: optional callable(str) for one line per step.
    """
    from .prune import count, save_plan
    from .quantize import QuantizeConfig, quantize

    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = _Data(labels, np.asarray(tr_idx), net, cfg.seed)
    macs0, _ = count(net)
    reference = copy.deepcopy(net).eval()
    current = copy.deepcopy(net).eval()
    points: list[StepPoint] = []
    fails = 0
    for step in range(1, cfg.max_steps + 1):
        t0 = time.perf_counter()
        sdir = out / f"step_{step:02d}"
        gains, _ = probe_stages(current, cfg, sdir / "probe")
        t_probe = time.perf_counter() - t0
        chosen = sorted((s for s, g in gains.items() if g >= cfg.min_gain), key=lambda s: -gains[s])
        chosen = chosen[: cfg.max_stages] if cfg.max_stages else chosen
        if not chosen:
            log.info("step %d: no stage makes the runtime faster by >= %.1f %%: stop", step, 100 * cfg.min_gain)
            break
        pres = prune_stages(current, chosen, cfg, data.importance_batches)
        current = pres.model.eval()
        save_plan(pres.plan, sdir / "prune_plan.json")
        t_kd = time.perf_counter()
        kd = distill_step(current, reference, data, cfg, sdir / "kd")
        t_kd = time.perf_counter() - t_kd
        fp32 = _export(current, sdir / "progressive_fp32.onnx", crops=calibration[:2])
        int8 = quantize(fp32, sdir / "progressive_int8.onnx", QuantizeConfig(fold_input=True),
                        calibration=calibration).path
        macs, params = count(current)
        pt = StepPoint(step, chosen, macs / macs0, params, probe_gain={k: round(v, 4) for k, v in gains.items()},
                       fp32=fp32, int8=int8)
        pt.scores_int8 = score(int8)
        pt.scores_fp32 = score(fp32) if cfg.score_fp32 else {}
        pt.passes = None if floor_ok is None else bool(floor_ok(pt.scores_int8))
        pt.seconds = time.perf_counter() - t0
        pt.kd_loss = kd.get("final_loss")
        pt.phase_seconds = {"probe": round(t_probe, 1), "kd": round(t_kd, 1),
                            "prune_export_score": round(pt.seconds - t_probe - t_kd, 1)}
        points.append(pt)
        line = (f"step {step}: pruned {','.join(chosen)}; MACs {100 * pt.macs_fraction:.0f} %; "
                f"int8 {pt.scores_int8}; fp32 {pt.scores_fp32}; kd loss {pt.kd_loss}; {pt.phase_seconds}")
        log.info(line)
        if progress_log:
            progress_log(line)
        (out / "progressive.json").write_text(json.dumps({"config": cfg.to_dict(), "points": [asdict(p) for p in points]},
                                                          indent=1))
        fails = fails + 1 if pt.passes is False else 0
        if pt.passes is False and fails > cfg.patience:
            break
    return points


def best_passing(points: list[StepPoint]) -> StepPoint | None:
    """The most pruned step that passed the gate (None: none did)."""
    ok = [p for p in points if p.passes]
    return ok[-1] if ok else None


__all__ = ["STAGES", "ProgressiveConfig", "StepPoint", "best_passing", "probe_stages", "prune_stages",
           "run_progressive", "stage_convs"]
