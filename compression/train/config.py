"""Options of the :class:`~edgepose.compression.train.Trainer`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgepose.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("cosine", "constant", "onecycle")


@dataclass(frozen=True)
class TrainerConfig:
    """How a loss module is optimised.

    Attributes:
        steps: optimiser steps; with ``minutes`` an upper bound (0 = the time budget only).
        minutes: wall-clock budget (0 = off): training stops when it is spent and the cosine spans it.
        batch_size: samples per optimiser step over all processes (each of N ranks takes 1/N).
        lr / weight_decay / optimizer: peak learning rate, decoupled weight decay, ``adamw`` or ``adam``.
        schedule: ``cosine`` (linear warm-up then cosine to ``lr_floor``: :func:`.schedule.lr_factor`),
            ``constant``, or ``onecycle`` (torch's OneCycleLR, ``onecycle_pct`` warm-up).
        warmup: warm-up steps of ``cosine``.
        lr_floor: the cosine's lowest multiplier.
        grad_clip: max global gradient norm (0 = no clipping).
        seed: data order (epoch e is shuffled with seed + e) and data-worker seeds.
        workers: DataLoader worker processes (they run the augmentation; persistent, prefetching).
        prefetch: batches each worker prepares ahead.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.
        amp: bf16 autocast on CUDA (ignored elsewhere).
        channels_last: NHWC memory format for the module and the batch's ``image``.
        threads: torch intra-op threads (None leaves torch's setting).
        eval_every: steps between held-out losses (0 = only at checkpoints and the end).
        eval_at_start: also a held-out loss before the first step.
        ckpt_every: steps between checkpoints (0 = only the final one; needs an output folder).
        check_finite: stop with FloatingPointError on a NaN / inf loss.
        find_unused_parameters: passed to DistributedDataParallel.
        progress: tqdm bar (rank 0).
        desc: bar label and log name.
    """

    steps: int = 1000
    minutes: float = 0.0
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup: int = 0
    lr_floor: float = 0.0
    onecycle_pct: float = 0.05
    grad_clip: float = 5.0
    seed: int = 0
    workers: int = 0
    prefetch: int = 2
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    threads: int | None = None
    eval_every: int = 0
    eval_at_start: bool = False
    ckpt_every: int = 0
    check_finite: bool = True
    find_unused_parameters: bool = False
    progress: bool = True
    desc: str = "train"

    def __post_init__(self):
        def bad(field, need):
            raise ConfigError(f"TrainerConfig.{field} must be {need}, got {getattr(self, field)!r}")

        for f in ("steps", "warmup", "workers", "eval_every", "ckpt_every"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad(f, "an int >= 0")
        if self.batch_size < 1:
            bad("batch_size", ">= 1")
        if self.prefetch < 1:
            bad("prefetch", ">= 1")
        if not self.minutes >= 0:
            bad("minutes", ">= 0")
        if self.steps == 0 and self.minutes == 0:
            raise ConfigError("TrainerConfig.steps is 0 and minutes is 0: give a step or a time budget")
        if self.schedule == "onecycle" and self.steps == 0:
            bad("steps", ">= 1 with schedule 'onecycle'")
        if not self.lr >= 0:
            bad("lr", ">= 0")
        if self.weight_decay < 0:
            bad("weight_decay", ">= 0")
        if self.grad_clip < 0:
            bad("grad_clip", ">= 0")
        if not 0 <= self.lr_floor < 1:
            bad("lr_floor", "in [0, 1)")
        if not 0 < self.onecycle_pct < 1:
            bad("onecycle_pct", "in (0, 1)")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {', '.join(SCHEDULES)}")
        if self.device not in DEVICES:
            bad("device", f"one of {', '.join(DEVICES)}")
        if self.threads is not None and self.threads < 1:
            bad("threads", ">= 1 or None")

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["TrainerConfig", "DEVICES", "OPTIMIZERS", "SCHEDULES"]


def check_schedule(cfg, *, val_fraction: bool = False) -> None:
    """The schedule fields every method config shares (``steps``, ``batch_size``, ``eval_every``,
    ``lr``, optionally ``val_fraction``), validated once with the config's own name in the error."""
    name = type(cfg).__name__
    for f in ("steps", "batch_size", "eval_every"):
        if getattr(cfg, f) < 1:
            raise ConfigError(f"{name}.{f} must be >= 1, got {getattr(cfg, f)!r}")
    if cfg.lr <= 0:
        raise ConfigError(f"{name}.lr must be > 0, got {cfg.lr!r}")
    if val_fraction and not 0.0 < cfg.val_fraction < 0.5:
        raise ConfigError(f"{name}.val_fraction must be in (0, 0.5), got {cfg.val_fraction!r}")
