"""The ``dkd`` recipe: DKD (pose-kernel distillator) on teacher-labelled consecutive-frame clips.

Two phases on the one :class:`~.trainer.Trainer`, the former DKD ablation's order
(``compression/distill/dkd.py`` holds the losses and the clip collection, used read-only here):

1. **frame pre-training**: the encoder + per-frame head of a
   :class:`~edgepose.compression.students.dkd_model.DKDPose` on still teacher-labelled crops
   (:class:`~edgepose.compression.distill.dkd.FramesLoss`), ``options.pretrain_steps`` steps
   (with ``--steps N``: at most N);
2. **clip training**: clips of ``options.clip_length`` tracked frames
   (:func:`~edgepose.compression.distill.dkd.collect_clips` on the recipe's training videos), frame 0
   a keyframe and the next ones through the pose kernels, output KD on every frame + temporal
   consistency (:class:`~edgepose.compression.distill.dkd.DKDLoss`); ``per_frame: true`` trains
   the same network as the plain per-frame student (the ablation's baseline arm).

``data.videos``: training videos under the assets folder, or ``[temporal]`` = the licence-clean
training videos of :data:`edgepose.compression.temporal.data.TRAIN_VIDEOS` (5 of its 20
near-identical ASL clips, as the ablation). The evaluation videos are refused by ``collect_clips``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

#: ``options`` of a dkd recipe and their defaults (DKDTrainConfig's, plus the clip sampling).
OPTIONS = {"pretrain_steps": 800, "pretrain_lr": 2e-3, "pretrain_batch_size": 16, "w_temporal": 1.0,
           "w_spatial_kl": 1.0, "clip_length": 3, "per_frame": False, "segment": 12, "max_segments": 6,
           "gaps": [1, 2, 4], "rotate_deg": 20.0}


def check_options(name: str, o: dict) -> dict:
    """``options`` with defaults filled in; ConfigError naming ``options.<field>``."""
    bad = [k for k in o if k not in OPTIONS]
    if bad:
        raise ConfigError(f"recipe {name}: unknown field options.{bad[0]}; valid: {', '.join(sorted(OPTIONS))}")
    full = {**OPTIONS, **o}
    for k in ("pretrain_steps", "pretrain_batch_size", "clip_length", "segment", "max_segments"):
        v = full[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "pretrain_steps" else 1):
            raise ConfigError(f"recipe {name}: field options.{k} must be an int >= "
                              f"{0 if k == 'pretrain_steps' else 1}, got {v!r}")
    if full["clip_length"] < 2:
        raise ConfigError(f"recipe {name}: field options.clip_length must be >= 2, got {full['clip_length']!r}")
    if full["segment"] < full["clip_length"]:
        raise ConfigError(f"recipe {name}: field options.segment must be >= options.clip_length, "
                          f"got {full['segment']!r}")
    if not isinstance(full["gaps"], list) or not full["gaps"] or not all(
            isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in full["gaps"]):
        raise ConfigError(f"recipe {name}: field options.gaps must be a non-empty list of ints >= 1, "
                          f"got {full['gaps']!r}")
    for k in ("pretrain_lr", "w_temporal", "w_spatial_kl", "rotate_deg"):
        if isinstance(full[k], bool) or not isinstance(full[k], (int, float)) or full[k] < 0:
            raise ConfigError(f"recipe {name}: field options.{k} must be a number >= 0, got {full[k]!r}")
    if not isinstance(full["per_frame"], bool):
        raise ConfigError(f"recipe {name}: field options.per_frame must be bool, got {full['per_frame']!r}")
    return full


def model_config(name: str, model: dict):
    """The :class:`DKDConfig` of ``model``; ConfigError naming ``model.<field>``."""
    import dataclasses

    from ..students.dkd_model import DKDConfig

    known = {f.name for f in dataclasses.fields(DKDConfig)}
    bad = [k for k in model if k not in known]
    if bad:
        raise ConfigError(f"recipe {name}: unknown field model.{bad[0]}; valid: {', '.join(sorted(known))}")
    try:
        return DKDConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in model.items()})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"recipe {name}: model: {e}") from None


def recipe_videos(videos: list[str], assets: Path) -> list[tuple[str, int, int | None]]:
    """(path, start, stop) of ``data.videos`` (``temporal``: the licence-clean training videos)."""
    out = []
    for v in videos:
        if v == "temporal":
            from ..temporal.data import TRAIN_VIDEOS

            asl = [p for p, _, _ in TRAIN_VIDEOS if "asl_gestures" in p][:5]
            out += [(str(assets / p), a, b) for p, a, b in TRAIN_VIDEOS if "asl_gestures" not in p or p in asl]
        else:
            p = assets / v
            if not p.is_file():
                raise ConfigError(f"training video not found: {str(p)!r} (data.videos entries are files under "
                                  "the assets folder, or 'temporal')")
            out.append((str(p), 0, None))
    return out


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def train_dkd_recipe(rec, labels, out: Path | None, *, tcfg, tr_idx, va_idx, videos, teacher: str, detector: str,
                     cache: str, resume: bool = False, progress: bool = True):
    """Run both phases; returns ``(TrainResult of the clip phase, trained DKDPose)``.

    Args:
        rec: the validated recipe (``method: dkd``).
        labels: still teacher labels; the frame pre-training uses ``tr_idx`` only (``va_idx``: its held-out loss).
        out: folder for the clip phase's log / checkpoints (None: nothing written) and ``pretrain.pt``.
        tcfg: the clip phase's :class:`TrainerConfig` (its ``steps`` also caps the pre-training).
        videos: (path, start, stop) training videos for the clips (never evaluation material).
        teacher / detector: ONNX files labelling the clips and starting their tracks.
        cache: the clip cache folder.
    """
    import torch

    from ..data.augment import AugmentConfig
    from ..data.dataset import PseudoLabelDataset
    from ..distill.dkd import ClipConfig, ClipDataset, DKDLoss, FramesLoss, collect_clips
    from ..students.dkd_model import DKDPose
    from ..students.vit import MEAN, STD
    from .trainer import Trainer

    o = check_options(rec.name, rec.options)
    mcfg = model_config(rec.name, rec.model)
    torch.manual_seed(rec.seed)
    model = DKDPose(mcfg)
    size = mcfg.input_size
    pre = None if out is None else Path(out) / "pretrain.pt"
    n_pre = min(o["pretrain_steps"], tcfg.steps) if tcfg.steps else o["pretrain_steps"]
    if pre is not None and pre.is_file() and resume:
        model.load_state_dict(torch.load(pre, map_location="cpu"))
    elif n_pre:
        kw = dict(out_size=size, scale=np.full(3, 1.0 / STD, np.float32), shift=np.full(3, -MEAN / STD, np.float32))
        aug = AugmentConfig() if rec.data.get("augment", True) else AugmentConfig.none()
        ds = PseudoLabelDataset(labels, tr_idx, augment_cfg=aug, seed=rec.seed, **kw)
        va = PseudoLabelDataset(labels, va_idx, augment_cfg=AugmentConfig.none(), seed=rec.seed, **kw)
        pcfg = replace(tcfg, steps=n_pre, minutes=0.0, lr=o["pretrain_lr"], warmup=max(1, n_pre // 20),
                       batch_size=o["pretrain_batch_size"], find_unused_parameters=True,  # kernels: unused
                       eval_every=0, ckpt_every=0, desc=f"{rec.name}-pretrain", channels_last=False)
        Trainer(FramesLoss(model, o["w_spatial_kl"]), ds, pcfg, val_data=va).fit()
        if pre is not None and _rank() == 0:
            pre.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), pre)
    ccfg = ClipConfig(teacher=teacher, detector=detector, gaps=tuple(o["gaps"]), segment=o["segment"],
                      max_segments=o["max_segments"], store_size=size)
    if _rank() > 0:  # under torchrun rank 0 collects (and caches) the clips, the others read the cache
        torch.distributed.barrier()
    clips = collect_clips(videos, ccfg, cache, progress=progress and _rank() == 0)
    if _rank() == 0 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    starts = clips.clip_starts(o["clip_length"])
    if not len(starts):
        raise ConfigError(f"recipe {rec.name}: no clip of {o['clip_length']} tracked frames in {len(videos)} "
                          "videos; give longer videos or a smaller options.clip_length")
    segs = np.unique(clips.segment)
    val_segs = set(np.random.default_rng(rec.seed).permutation(segs)[: max(1, int(len(segs) * 0.1))])
    is_val = np.array([clips.segment[s] in val_segs for s in starts])
    if is_val.all():  # a single segment: train on it, no held-out clips
        is_val[:] = False
    kw = dict(length=o["clip_length"], mean=MEAN, std=STD)
    train_ds = ClipDataset(clips, starts[~is_val], augment_cfg=AugmentConfig(rotate_deg=o["rotate_deg"]),
                           seed=rec.seed, **kw)
    val_ds = ClipDataset(clips, starts[is_val][::3], augment_cfg=AugmentConfig.none(), **kw) if is_val.any() else None
    w_t = 0.0 if o["per_frame"] else o["w_temporal"]
    module = DKDLoss(model, o["per_frame"], w_t, o["w_spatial_kl"])
    # per-frame / keyframe-only batches leave the distillator without gradients (DDP must know)
    res = Trainer(module, train_ds, replace(tcfg, channels_last=False, find_unused_parameters=True), val_data=val_ds,
                  out=out,
                  save_module=model).fit(resume=resume)
    model.eval()
    log.info("%s: %d clip steps on %d clips (%d tracked frames)", rec.name, res.steps, len(train_ds), len(clips.images))
    return res, model


__all__ = ["OPTIONS", "check_options", "model_config", "recipe_videos", "train_dkd_recipe"]
