"""A pruned student for scene specialisation: chosen by measured latency, pre-trained once, specialised per scene.

:func:`~.scene.adapt` with ``student="pruned"`` prunes the generic Lightning per scene and fine-tunes
the broken result with the Lightning schedule. This module is the product recipe behind issue 21's
"specialised pruned student at <= 0.5x the latency of Lightning int8":

1. :func:`pruned_student` removes channels to a MACs target (the same pruning for every scene, so it
   is picked once); :func:`latency_ratios` times its int8 export against the deployed int8 in one
   interleaved run (per-round ratios, median and quartiles: MACs and latency do not fall together
   on MoveNet, so the ratio is measured, never derived from MACs).
2. :func:`distil` trains it (heatmap KD from the teacher's maps + task loss + online KD from the
   frozen unpruned generic model, ``w_ref``) through :func:`~.scene.finetune`: once on a generic
   pool (the shippable training crops), then on each scene's training segment.
3. :func:`specialise` exports the scene's int8 (ORT static QDQ calibrated on its training crops)
   and runs the gate against the deployed model on the gate segment, like :func:`~.scene.adapt`.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgepose.errors import ConfigError

from .scene import AdaptConfig, export_int8, finetune, gate_verdict
from .scoring import agreement


def pruned_student(generic, target_macs: float, *, importance: str = "magnitude", batches=None,
                   global_pruning: bool = False, ignore: tuple[str, ...] = ()):
    """``(pruned copy of generic, summary)``: channels removed to keep ``target_macs`` of its MACs."""
    from ..prune import PruneConfig, prune

    if importance != "magnitude" and not batches:
        raise ConfigError(f"importance={importance!r} needs labelled batches; pass batches= or use 'magnitude'")
    cfg = PruneConfig(importance=importance, target_macs=target_macs, global_pruning=global_pruning,
                      ignore=tuple(ignore))
    res = prune(generic, cfg, batches=batches)
    return res.model, {**res.summary(), "config": cfg.to_dict()}


def stage_pruned_student(generic, ratios: dict[str, float], *, importance: str = "magnitude", batches=None):
    """``(pruned copy of generic, summary)`` with a channel ratio per stage of the network
    (:data:`~edgepose.compression.progressive.STAGES`; a stage left out keeps its channels): the
    high-resolution stages (stem, stride 4, the 48 x 48 head towers) hold most of the run time and
    the low-resolution ones most of the capacity, so they are pruned by different ratios. One
    :func:`~edgepose.compression.prune.prune` call per ratio, each checked by its exactness guard."""
    from ..progressive import STAGES, stage_convs
    from ..prune import PruneConfig, count, prune

    unknown = sorted(set(ratios) - {s for s, _, _ in STAGES})
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages: {[s for s, _, _ in STAGES]}")
    if importance != "magnitude" and not batches:
        raise ConfigError(f"importance={importance!r} needs labelled batches; pass batches= or use 'magnitude'")
    macs0, params0 = count(generic)
    net, steps = generic, []
    for ratio in sorted(set(ratios.values()), reverse=True):
        chosen = [s for s, r in ratios.items() if r == ratio]
        convs = stage_convs(net)
        ignore = tuple(n for st, names in convs.items() if st not in chosen for n in names)
        cfg = PruneConfig(importance=importance, ratio=ratio, ignore=ignore)
        res = prune(net, cfg, batches=batches)
        net = res.model
        steps.append({"stages": chosen, "ratio": ratio, "guard_max_diff": res.guard_max_diff})
    macs, params = count(net)
    return net, {"macs_before": macs0, "macs_after": macs, "macs_fraction": macs / macs0, "params_before": params0,
                 "params_after": params, "stage_ratios": dict(ratios), "steps": steps, "importance": importance}


def label_batches(labels, size: int, net, n: int = 64, batch: int = 16) -> list:
    """Un-augmented batches spread over ``labels`` (for data-driven pruning importance)."""
    from torch.utils.data import DataLoader

    from ..data.augment import AugmentConfig
    from ..data.dataset import PseudoLabelDataset

    idx = np.linspace(0, len(labels) - 1, num=min(n, len(labels))).round().astype(int)
    ds = PseudoLabelDataset(labels, idx, out_size=size, scale=net.scale.flatten().numpy(),
                            shift=net.shift.flatten().numpy(), augment_cfg=AugmentConfig.none())
    return list(DataLoader(ds, batch_size=batch))


def latency_ratios(models: dict[str, str | os.PathLike], baseline: str, *, threads: int = 1, rounds: int = 30,
                   per_round: int = 5) -> dict[str, dict]:
    """Per-round latency ratio of each model to ``models[baseline]``, all timed in one interleaved run.

    Each round runs every model ``per_round`` times in a row; a round's time for a model is the
    fastest of those runs (on a shared host a 2 ms run is often pre-empted for a whole scheduler
    slice, which a median over rounds of ~1 ms models mis-weights), and the ratio is the median
    over rounds of the per-round ratios.

    Returns:
        name -> ``{"ms": median of the per-round minima, "ms_p50": median of all runs, "ratio",
        "q25", "q75", "per_round": the ratios}`` (the baseline's ratio is 1), plus ``cpu_ratio`` (the same ratio in the
        calling thread's CPU time) at 1 thread when the timer records it.
    """
    from ..latency import interleaved_latency

    if baseline not in models:
        raise ConfigError(f"baseline {baseline!r} is not among the timed models {sorted(models)}")
    rows = interleaved_latency(models, rounds=rounds, per_round=per_round, threads=threads)

    def round_min(name, field="samples"):
        return np.asarray(getattr(rows[name], field)).reshape(rounds, per_round).min(axis=1)

    base = round_min(baseline)
    cpu = threads == 1 and all(len(getattr(r, "cpu_samples", None) or []) == rounds * per_round for r in rows.values())
    out = {}
    for name, row in rows.items():
        r = round_min(name) / base
        out[name] = {"ms": round(float(np.median(round_min(name))), 3), "ms_p50": round(row.p50, 3),
                     "ratio": round(float(np.median(r)), 3),
                     "q25": round(float(np.percentile(r, 25)), 3), "q75": round(float(np.percentile(r, 75)), 3),
                     "per_round": [round(float(v), 4) for v in r]}
        if cpu:  # at 1 thread the run's own CPU time: what other processes took from the core left out
            c = round_min(name, "cpu_samples") / round_min(baseline, "cpu_samples")
            out[name]["cpu_ratio"] = round(float(np.median(c)), 3)
    return out


def distil(student, reference, labels, cfg: AdaptConfig, *, out=None, progress: bool = False) -> dict:
    """Train ``student`` in place on ``labels`` (teacher maps + keypoints, and ``reference``'s heads
    when ``cfg.w_ref`` > 0) through the one Trainer; returns the trainer summary."""
    return finetune(student, labels, cfg, reference=reference, out=out, progress=progress)


def specialise(student, reference, train_labels, gate_labels, cfg: AdaptConfig, out_dir, *, scene: dict,
               current: str, deploy: str = "int8", progress: bool = False) -> dict:
    """Fine-tune a copy of ``student`` on one scene's training segment, export its int8 and gate it.

    Args:
        student: the (pre-trained) pruned student; left untouched.
        reference: the frozen unpruned generic model (online KD when ``cfg.w_ref`` > 0).
        train_labels / gate_labels: the teacher's labels of the scene's training and gate segments.
        cfg: schedule (``steps``, ``lr``, ``w_ref`` ...).
        out_dir: where ``pruned_fp32.onnx`` / ``pruned_int8.onnx`` (and ``adapted_int8.onnx`` when the
            gate accepts) go.
        scene: the metadata record written into the models (:func:`~.scene.scene_record`).
        current: the deployed model the gate compares against.
        deploy: the file the device would run and the gate scores: ``int8`` (ORT QDQ) or ``fp32``
            (on ORT a heavily pruned MoveNet runs faster in fp32: its int8 depthwise convolutions
            at 96 x 96 and 48 x 48 cost about as much with 8 channels as with 32).

    Returns:
        ``{"int8", "fp32", "deployed", "accepted", "gate": {...}, "training": {...}}``.
    """
    if deploy not in ("int8", "fp32"):
        raise ConfigError(f"deploy must be 'int8' or 'fp32', got {deploy!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(student)
    training = distil(net, reference, train_labels, cfg, out=out / "train", progress=progress) if cfg.steps else {}
    fp32, int8 = export_int8(net, train_labels, out, scene, cfg, stem="pruned")
    chosen = int8 if deploy == "int8" else fp32
    cand = agreement(chosen, gate_labels, threads=cfg.threads)
    cur = agreement(current, gate_labels, threads=cfg.threads)
    ok = gate_verdict(cand, cur, cfg.gate_margin)
    if ok:
        shutil.copyfile(chosen, out / f"adapted_{deploy}.onnx")
    return {"int8": os.fspath(int8), "fp32": os.fspath(fp32), "deployed": os.fspath(chosen), "accepted": ok,
            "training": training,
            "gate": {"candidate": cand.to_dict(), "current": cur.to_dict(), "margin": cfg.gate_margin}}


def schedule(cfg: AdaptConfig, **changes) -> AdaptConfig:
    """``cfg`` with ``changes`` (a pruned student's longer schedule, for example)."""
    return replace(cfg, **changes)
