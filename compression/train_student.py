"""A small reusable trainer for students on cached teacher pseudo-labels.

``train(objective, labels, cfg, input_size=..., scale=..., shift=...)`` optimises every parameter
of ``objective``: an ``nn.Module`` whose ``forward(batch)`` returns a dict of named scalar loss
terms (``students.losses.HeatmapKD`` / ``SimCCKD``, ``students.rle.RLEObjective``,
``distill.okdhp.OKDHP``; it holds the student and any training-only parts such as RLE's flow or
OKDHP's FAU). The budget is a number of optimiser steps, so methods compare at equal budget; the
report keeps the per-step loss curve, a validation loss on held-out *source files* of the label set
(never the evaluation set) and timings, and saves as JSON.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ._train import fill_report
from .data.augment import AugmentConfig
from .data.dataset import PseudoLabelDataset
from .data.labels import LabelSet
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudentTrainConfig:
    """Training options.

    Attributes:
        steps: optimiser steps: the training budget methods are compared at.
        batch_size: crops per step.
        lr: peak AdamW learning rate (students train from scratch: higher than fine-tuning's).
        weight_decay: AdamW weight decay.
        warmup: linear warm-up steps, then cosine decay to 0.
        grad_clip: max gradient norm (the RLE likelihood can spike early).
        val_fraction: share of label-set source files held out for the validation loss.
        eval_every: steps between validation losses.
        augment: augmentation ranges.
        seed: weights init, data order and augmentation seed.
        threads: torch intra-op threads (1: the machines are shared; None leaves torch's setting).
        channels_last: train in NHWC memory format (2x faster depthwise convs on CPU, measured).
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    grad_clip: float = 5.0
    val_fraction: float = 0.1
    eval_every: int = 100
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    threads: int | None = 1
    channels_last: bool = True
    version: int = 1

    def __post_init__(self):
        for f in ("steps", "batch_size", "eval_every"):
            if getattr(self, f) < 1:
                raise ConfigError(f"StudentTrainConfig.{f} must be >= 1, got {getattr(self, f)!r}")
        if self.lr <= 0:
            raise ConfigError(f"StudentTrainConfig.lr must be > 0, got {self.lr!r}")
        if self.warmup < 0:
            raise ConfigError(f"StudentTrainConfig.warmup must be >= 0, got {self.warmup!r}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"StudentTrainConfig.val_fraction must be in (0, 0.5), got {self.val_fraction!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainReport:
    """Loss curve and timings of a :func:`train` run.

    Attributes:
        steps: step numbers of ``train``.
        train: per-step total training loss.
        terms: per-step value of each loss term.
        val_steps / val: validation loss (total) at those steps (step 0 = before training).
        seconds: wall time.
        n_train / n_val: crops used.
        config: the :class:`StudentTrainConfig` as a dict.
    """

    steps: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    val_steps: list[int] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def save_json(self, path: str | Path) -> Path:
        """Write the report (loss curve included) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()))
        return path


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (weights init and anything else drawing from them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_datasets(labels: LabelSet, cfg: StudentTrainConfig, *, input_size: int, scale, shift
                  ) -> tuple[PseudoLabelDataset, PseudoLabelDataset]:
    """(augmented train set, un-augmented validation set), split by source file."""
    tr_idx, va_idx = labels.split(cfg.val_fraction, cfg.seed)
    kw = dict(out_size=input_size, scale=np.asarray(scale, np.float32), shift=np.asarray(shift, np.float32))
    return (PseudoLabelDataset(labels, tr_idx, augment_cfg=cfg.augment, seed=cfg.seed, **kw),
            PseudoLabelDataset(labels, va_idx, augment_cfg=AugmentConfig.none(), seed=cfg.seed, **kw))


def _prepare(batch: dict, channels_last: bool, device=None) -> dict:
    if device is not None:
        from .train.data import to_device

        batch = to_device(batch, device)
    if channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    return batch


@torch.no_grad()
def validation_loss(objective: torch.nn.Module, loader, *, channels_last: bool = False, device=None) -> float:
    """Mean total loss of ``objective`` over ``loader`` in eval mode (mode restored after); batches
    go to ``device`` when given."""
    was = objective.training
    objective.eval()
    tot, n = 0.0, 0
    for batch in loader:
        batch = _prepare(batch, channels_last, device)
        b = len(batch["image"])
        tot += float(sum(objective(batch).values())) * b
        n += b
    objective.train(was)
    return tot / max(n, 1)


def train(objective: torch.nn.Module, labels: LabelSet, cfg: StudentTrainConfig = StudentTrainConfig(), *, input_size: int,
          scale, shift, progress: bool = True, datasets=None, device: str = "auto") -> TrainReport:
    """Optimise ``objective`` for ``cfg.steps`` AdamW steps on ``labels``.

    Args:
        objective: module returning a dict of loss terms for a batch (see the module docstring).
            Seed before building it (:func:`seed_everything`) for reproducible weights.
        labels: cached teacher pseudo-labels.
        cfg: options.
        input_size: the student's input side.
        scale, shift: per-channel input normalisation, ``x = rgb * scale + shift``.
        progress: show a tqdm bar.
        datasets: optional (train, val) datasets instead of :func:`make_datasets`.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.

    Returns:
        The report; ``objective`` is left in eval mode.
    """
    from .train import Trainer, TrainerConfig

    train_ds, val_ds = datasets or make_datasets(labels, cfg, input_size=input_size, scale=scale, shift=shift)
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=False)
    cl = cfg.channels_last
    tcfg = TrainerConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         warmup=cfg.warmup, grad_clip=cfg.grad_clip, seed=cfg.seed * 100003, threads=cfg.threads,
                         channels_last=cl, eval_every=cfg.eval_every, eval_at_start=True, device=device,
                         progress=progress, desc=type(objective).__name__)
    rep = TrainReport(n_train=len(train_ds), n_val=len(val_ds), config=cfg.to_dict())
    t0 = time.perf_counter()
    trainer = Trainer(objective, train_ds, tcfg,
                      validate=lambda m: validation_loss(m, val_loader, channels_last=cl, device=trainer.device))
    res = trainer.fit()
    fill_report(rep, res.history)
    rep.val_steps = [v["step"] for v in res.val]
    rep.val = [v["loss"] for v in res.val]
    rep.seconds = time.perf_counter() - t0
    return rep


__all__ = ["StudentTrainConfig", "TrainReport", "seed_everything", "make_datasets", "validation_loss", "train"]
