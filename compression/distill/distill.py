"""``distill(student, labels, cfg)``: fine-tune a (pruned) student on cached teacher labels.

The teacher is offline (its maps and keypoints are in the label cache); an optional frozen
``reference`` model (typically the unpruned student) adds online KD on the same augmented input.
The report keeps the loss curve (per step) and a validation loss on held-out source files.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .._train import fill_report
from ..train import LossModule
from ..data.augment import AugmentConfig
from ..data.dataset import PseudoLabelDataset
from ..data.labels import LabelSet
from .losses import kd_losses, reference_loss, task_losses

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """Fine-tuning options.

    Attributes:
        steps: optimiser steps (CPU budget: a few hundred steps take minutes on 2 cores).
        batch_size: crops per step.
        lr: peak AdamW learning rate (small: the weights start from a trained model).
        weight_decay: AdamW weight decay.
        warmup: linear warm-up steps, then cosine decay to 0.
        w_kd: weight of the teacher-map KD terms.
        w_task: weight of the pseudo-label task terms.
        w_ref: weight of online KD from the reference model (0 = off, or no reference given).
        val_fraction: share of source files held out for the validation loss.
        eval_every: steps between validation losses.
        augment: augmentation ranges.
        seed: data order / augmentation seed.
        threads: torch intra-op threads (None = leave torch's setting).
    """

    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int = 20
    w_kd: float = 1.0
    w_task: float = 1.0
    w_ref: float = 1.0
    val_fraction: float = 0.1
    eval_every: int = 50
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    threads: int | None = None
    version: int = 1

    def __post_init__(self):
        from ..train.config import check_schedule

        check_schedule(self, val_fraction=True)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DistillReport:
    """Loss curve and timings of a :func:`distill` run.

    Attributes:
        steps: step numbers of ``train``.
        train: per-step total training loss.
        terms: per-step value of each loss term.
        val_steps / val: validation loss (total) at those steps (step 0 = before training).
        val_px: median keypoint distance (student input px) to the teacher's confident
            keypoints on the validation crops, at the same steps (decoded like the runtime).
        seconds: wall time.
        n_train / n_val: crops used.
    """

    steps: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    val_steps: list[int] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    val_px: list[float] = field(default_factory=list)
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self, every: int = 25) -> str:
        """A loss-curve table (every ``every``-th step, smoothed over the window) + validation."""
        lines = ["| step | train loss (window mean) |", "|---:|---:|"]
        for i in range(0, len(self.train), every):
            lines.append(f"| {self.steps[min(i + every, len(self.steps)) - 1]} | "
                         f"{np.mean(self.train[i:i + every]):.4f} |")
        lines += ["", "| step | validation loss | median px to teacher |", "|---:|---:|---:|"]
        lines += [f"| {s} | {v:.4f} | {p:.2f} |" for s, v, p in zip(self.val_steps, self.val, self.val_px)]
        return "\n".join(lines)

    def save(self, out_dir: str | Path, *, plot: bool = True) -> list[Path]:
        """Write ``distill.json``, ``distill.md`` and (with matplotlib) ``distill_loss.png``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = [out / "distill.json", out / "distill.md"]
        files[0].write_text(json.dumps(self.to_dict()))
        files[1].write_text(self.to_markdown())
        if plot:
            try:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
            except ImportError:
                log.info("matplotlib not installed: no loss plot")
                return files
            fig, ax = plt.subplots(figsize=(6, 3.5))
            k = max(1, len(self.train) // 50)
            sm = np.convolve(self.train, np.ones(k) / k, mode="valid")
            ax.plot(self.steps[k - 1:], sm, label="train (smoothed)")
            ax.plot(self.val_steps, self.val, "o-", label="validation")
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / "distill_loss.png", dpi=100)
            plt.close(fig)
            files.append(out / "distill_loss.png")
        return files


def _loss(student, batch, cfg: DistillConfig, reference, heads=None) -> dict[str, torch.Tensor]:
    heads = student(batch["image"]) if heads is None else heads
    terms = {}
    if cfg.w_kd:
        terms.update({k: v * cfg.w_kd for k, v in kd_losses(heads, batch["maps"]).items()})
    if cfg.w_task:
        terms.update({k: v * cfg.w_task for k, v in task_losses(heads, batch["keypoints"], batch["maps"]).items()})
    if reference is not None and cfg.w_ref:
        with torch.no_grad():
            ref = reference(batch["image"])
        terms.update({k: v * cfg.w_ref for k, v in reference_loss(heads, ref).items()})
    return terms


class DistillLoss(LossModule):
    """Heatmap KD of a (pruned) MoveNet student as a loss module: offline KD + task terms on the
    cached teacher labels, and online KD from a frozen ``reference`` (see :func:`distill`)."""

    def __init__(self, student, cfg: DistillConfig, reference=None):
        super().__init__()
        self.student, self.reference, self.cfg = student, reference, cfg
        self.freeze("reference")

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return _loss(self.student, batch, self.cfg, self.reference)


def validation_loss(student, loader, cfg: DistillConfig, reference=None) -> tuple[float, float]:
    """Mean total loss over ``loader`` (no augmentation, no gradients) and the median distance
    (input px) of the decoded keypoints to the teacher's keypoints scored >= 0.3."""
    from ..importer.movenet import decode_heads_torch
    from ..train.data import to_device

    student.eval()
    tot, n, dists = 0.0, 0, []
    d = student.decode
    dev = next(student.parameters()).device
    cw, osc = torch.from_numpy(d.center_weight).to(dev), torch.from_numpy(d.out_scale).to(dev)
    size = student.input_size[0]
    with torch.no_grad():
        for batch in loader:
            batch = to_device(batch, dev)
            heads = student(batch["image"])
            tot += float(sum(_loss(student, batch, cfg, reference, heads).values())) * len(batch["image"])
            n += len(batch["image"])
            kp = decode_heads_torch(*heads, cw, d.dist_offset, osc)
            t = batch["keypoints"]
            ok = t[..., 2] >= 0.3
            dists.append((torch.linalg.norm(kp[..., :2] - t[..., :2], dim=-1) * size)[ok])
    med = float(torch.cat(dists).median()) if dists else float("nan")
    return tot / max(n, 1), med


def distill(student: torch.nn.Module, labels: LabelSet, cfg: DistillConfig = DistillConfig(), *,
            reference: torch.nn.Module | None = None, progress: bool = True, device: str = "auto") -> DistillReport:
    """Fine-tune ``student`` in place on teacher pseudo-labels.

    Args:
        student: an imported (possibly pruned) :class:`MoveNetTorch`.
        labels: the cached teacher labels (:func:`label_media`).
        cfg: options.
        reference: optional frozen model whose head maps the student also matches (online KD).
        progress: show a tqdm bar.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.

    Returns:
        The loss-curve report; ``student`` is left in eval mode.
    """
    from ..train import Trainer, TrainerConfig

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tr_idx, va_idx = labels.split(cfg.val_fraction, cfg.seed)
    size = student.input_size[0]
    kw = dict(out_size=size, scale=student.scale.flatten().numpy(), shift=student.shift.flatten().numpy())
    train_ds = PseudoLabelDataset(labels, tr_idx, augment_cfg=cfg.augment, seed=cfg.seed, **kw)
    val_ds = PseudoLabelDataset(labels, va_idx, augment_cfg=AugmentConfig.none(), seed=cfg.seed, **kw)
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=False)
    module = DistillLoss(student, cfg, reference)
    tcfg = TrainerConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         warmup=cfg.warmup, grad_clip=5.0, seed=cfg.seed, channels_last=False, device=device,
                         eval_every=cfg.eval_every, eval_at_start=True, progress=progress, desc="distill")
    rep = DistillReport(n_train=len(train_ds), n_val=len(val_ds))
    t0 = time.perf_counter()

    def _validate(m):
        loss, px = validation_loss(m.student, val_loader, cfg, m.reference)
        log.info("val loss %.4f, median %.2f px to teacher", loss, px)
        return {"loss": loss, "px": px}

    res = Trainer(module, train_ds, tcfg, validate=_validate,
                  params=[p for p in student.parameters() if p.requires_grad]).fit()
    fill_report(rep, res.history)
    rep.val_steps = [v["step"] for v in res.val]
    rep.val = [v["loss"] for v in res.val]
    rep.val_px = [v["px"] for v in res.val]
    student.eval()
    rep.seconds = time.perf_counter() - t0
    return rep
