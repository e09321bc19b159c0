"""ViTKD: feature distillation between vision transformers (Yang et al., 2022), plus output KD.

Two feature terms on a ViT student's block outputs, from a frozen ViT teacher on the same input:

* **mimic** (shallow blocks, by default the first two): a linear aligner maps each student
  block's tokens to the teacher's width; MSE to the teacher block's tokens.
* **generate** (the deep block, by default the last): the student's tokens are aligned, a
  ``mask_ratio`` share of them is replaced by a learned mask token, and a generator (two 3x3
  convolutions on the token grid, which may be non-square) must produce the teacher's tokens; MSE
  on the masked positions only.

Both combine with output KD (:func:`heatmap_kd`, peak-weighted MSE to teacher heatmaps). The
aligners and the generator exist only in training; the student exports unchanged.

:func:`train_vit` trains a :class:`~edgepose.compression.students.vit.ViTPose` on cached teacher
pseudo-labels (heatmap KD from MoveNet Thunder's maps), optionally with a ViT teacher and ViTKD:
the same function first makes the ViT teacher (no ``teacher``), then the students.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .._train import fill_report
from ..train import LossModule
from ..data.augment import AugmentConfig
from ..data.dataset import PseudoLabelDataset
from ..data.labels import LabelSet
from .distill import DistillReport
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViTKDConfig:
    """Which blocks ViTKD pairs and how much each term weighs.

    Attributes:
        mimic_blocks: (student block, teacher block) pairs mimicked (the paper's shallow pair:
            the first two blocks of each).
        generate_blocks: (student block, teacher block) for generation (negative = from the
            end; the paper's deep pair: the last blocks).
        mask_ratio: share of student tokens masked before generation (0.5: the paper's best for
            small grids; higher makes the generator do more of the work).
        w_mimic: weight of the mimic MSE (the heatmap KD term is ~1-5 at the start of training).
        w_generate: weight of the generation MSE.
        w_heatmap: weight of output (heatmap) KD; 0 = features only.
        normalise_teacher: layer-normalise teacher tokens (no affine) before comparing, so
            both feature terms are O(1) whatever the teacher's activation scale.
    """

    mimic_blocks: tuple[tuple[int, int], ...] = ((0, 0), (1, 1))
    generate_blocks: tuple[int, int] = (-1, -1)
    mask_ratio: float = 0.5
    w_mimic: float = 1.0
    w_generate: float = 1.0
    w_heatmap: float = 1.0
    normalise_teacher: bool = True

    def __post_init__(self):
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"ViTKDConfig.mask_ratio must be in (0, 1), got {self.mask_ratio!r}")
        for f in ("w_mimic", "w_generate", "w_heatmap"):
            if getattr(self, f) < 0:
                raise ConfigError(f"ViTKDConfig.{f} must be >= 0, got {getattr(self, f)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the masked tokens only.

    Args:
        pred, target: (N, T, C) tokens.
        mask: (N, T) bool / 0-1, True where a token was masked.

    Returns:
        sum over masked tokens and channels of the squared error / (masked tokens x C).
    """
    m = mask.to(pred.dtype).unsqueeze(-1)
    return (((pred - target) ** 2) * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1.0)


def random_token_mask(n: int, tokens: int, ratio: float, *, generator: torch.Generator | None = None,
                      device=None) -> torch.Tensor:
    """(n, tokens) bool mask with exactly ``round(ratio * tokens)`` True per row."""
    k = max(1, int(round(ratio * tokens)))
    order = torch.rand(n, tokens, generator=generator, device=device).argsort(dim=1)
    mask = torch.zeros(n, tokens, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :k], True)
    return mask


class ViTKD(nn.Module):
    """The trainable parts of ViTKD (aligners, mask token, generator) and its two losses.

    Args:
        student_dim, teacher_dim: token widths.
        grid: token grid (rows, cols); rows x cols = tokens (non-square grids are fine).
        cfg: block pairs, mask ratio, weights.
    """

    def __init__(self, student_dim: int, teacher_dim: int, grid: tuple[int, int], cfg: ViTKDConfig = ViTKDConfig()):
        super().__init__()
        self.cfg, self.grid = cfg, tuple(grid)
        self.aligners = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in cfg.mimic_blocks)
        self.gen_align = nn.Linear(student_dim, teacher_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, teacher_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.generator = nn.Sequential(nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1))

    def _target(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return F.layer_norm(t, t.shape[-1:]) if self.cfg.normalise_teacher else t

    def mimic(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> torch.Tensor:
        """Mean over the mimicked pairs of MSE(aligner(student tokens), teacher tokens)."""
        losses = [F.mse_loss(al(s_feats[si]), self._target(t_feats[ti]))
                  for al, (si, ti) in zip(self.aligners, self.cfg.mimic_blocks)]
        return torch.stack(losses).mean()

    def generate(self, s_tokens: torch.Tensor, t_tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked-generation loss: align, mask, run the generator on the grid, MSE on masked tokens."""
        n, t, _ = s_tokens.shape
        gh, gw = self.grid
        if gh * gw != t:
            raise ConfigError(f"ViTKD grid {self.grid} has {gh * gw} cells but the features have {t} tokens")
        x = self.gen_align(s_tokens)
        m = mask.to(x.dtype).unsqueeze(-1)
        x = x * (1.0 - m) + self.mask_token.to(x.dtype) * m
        x = x.transpose(1, 2).reshape(n, -1, gh, gw)
        y = self.generator(x).reshape(n, -1, t).transpose(1, 2)
        return masked_mse(y, self._target(t_tokens), mask)

    def forward(self, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor], *,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """Weighted ``{"vitkd_mimic", "vitkd_generate"}`` from per-block (N, T, C) token lists."""
        si, ti = self.cfg.generate_blocks
        s_deep, t_deep = s_feats[si], t_feats[ti]
        if mask is None:
            mask = random_token_mask(s_deep.shape[0], s_deep.shape[1], self.cfg.mask_ratio,
                                     generator=generator, device=s_deep.device)
        out = {}
        if self.cfg.w_mimic:
            out["vitkd_mimic"] = self.cfg.w_mimic * self.mimic(s_feats, t_feats)
        if self.cfg.w_generate:
            out["vitkd_generate"] = self.cfg.w_generate * self.generate(s_deep, t_deep, mask)
        return out


def heatmap_kd(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Output KD: MSE to teacher heatmaps weighted ``1 + 10 x target`` (peaks count), x 100.

    The same form as :func:`~edgepose.compression.distill.losses.kd_losses`' heatmap term, so
    numbers are comparable across students.
    """
    return ((1.0 + 10.0 * target) * (pred - target) ** 2).mean() * 100.0


def spatial_kl(pred: torch.Tensor, target: torch.Tensor, *, min_peak: float = 0.1) -> torch.Tensor:
    """Localisation KD: KL(teacher || student) between each joint's heatmap normalised to sum 1.

    MSE on mostly-empty heatmaps gives a peak little gradient early in training; this term
    moves the student's mass to where the teacher's is. Joints whose teacher peak is below
    ``min_peak`` (not visible) are left out.

    Args:
        pred, target: (N, J, h, w) heatmaps in [0, 1].
    """
    p = pred.flatten(2)
    t = target.flatten(2)
    valid = (t.amax(dim=2) >= min_peak).to(pred.dtype)  # (N, J)
    tn = t / t.sum(dim=2, keepdim=True).clamp(min=1e-6)
    log_pn = torch.log(p.clamp(min=1e-6)) - torch.log(p.sum(dim=2, keepdim=True).clamp(min=1e-6))
    kl = (tn * (torch.log(tn.clamp(min=1e-6)) - log_pn)).sum(dim=2)
    return (kl * valid).sum() / valid.sum().clamp(min=1.0)


def output_kd(pred: torch.Tensor, target: torch.Tensor, *, w_kl: float = 1.0) -> dict[str, torch.Tensor]:
    """Output (heatmap) KD terms: ``heatmap_kd`` (peak-weighted MSE) and ``spatial_kl`` (if weighted)."""
    out = {"heatmap_kd": heatmap_kd(pred, target)}
    if w_kl:
        out["spatial_kl"] = w_kl * spatial_kl(pred, target)
    return out


def heatmap_agreement(pred: torch.Tensor, target: torch.Tensor, *, tol: float = 0.1, min_peak: float = 0.3) -> float:
    """Share of visible teacher joints whose student argmax is within ``tol`` x map side (a dev metric)."""
    n, j, h, w = pred.shape
    pi, ti = pred.flatten(2).argmax(2), target.flatten(2).argmax(2)
    d = torch.hypot((pi // w - ti // w).float(), (pi % w - ti % w).float())
    vis = target.flatten(2).amax(2) >= min_peak
    return float((d[vis] <= tol * max(h, w)).float().mean()) if vis.any() else float("nan")


# -- training ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViTTrainConfig:
    """Options of :func:`train_vit`.

    Attributes:
        steps: optimiser steps (a few hundred: minutes on one CPU thread for a tiny ViT).
        batch_size: crops per step.
        lr: peak AdamW learning rate (transformers from scratch like ~1e-3 with warm-up).
        weight_decay: AdamW weight decay (0.05: the usual ViT setting).
        warmup: linear warm-up steps, then cosine decay to 0.
        val_fraction: share of label source files held out for the validation loss.
        eval_every: steps between validation losses.
        w_spatial_kl: weight of the spatial-KL localisation term of output KD (both arms).
        augment: augmentation ranges.
        seed: init, data order, augmentation and mask seed.
        threads: torch intra-op threads (None = leave torch's setting).
    """

    steps: int = 500
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 30
    val_fraction: float = 0.1
    eval_every: int = 100
    w_spatial_kl: float = 1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    threads: int | None = None
    version: int = 1

    def __post_init__(self):
        from ..train.config import check_schedule

        check_schedule(self)

    def to_dict(self) -> dict:
        return asdict(self)


def _terms(student, batch, teacher, kd: ViTKD | None, w_heatmap: float, w_kl: float, gen) -> dict[str, torch.Tensor]:
    heat, s_feats = student.forward_features(batch["image"])
    terms = {}
    if w_heatmap:
        terms.update({k: w_heatmap * v for k, v in output_kd(heat, batch["maps"][:, :17], w_kl=w_kl).items()})
    if kd is not None:
        with torch.no_grad():
            _, t_feats = teacher.forward_features(batch["image"])
        terms.update(kd(s_feats, t_feats, generator=gen))
    return terms


class ViTLoss(LossModule):
    """Heatmap KD of a ViT student, plus ViTKD feature terms from a frozen ViT teacher (a loss module)."""

    def __init__(self, student, teacher, kd, w_heatmap: float, w_kl: float, generator):
        super().__init__()
        self.student, self.teacher, self.kd = student, teacher, kd
        self.w_heatmap, self.w_kl, self.generator = w_heatmap, w_kl, generator
        if kd is not None:
            self.freeze("teacher")

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return _terms(self.student, batch, self.teacher, self.kd, self.w_heatmap, self.w_kl, self.generator)


def _val(student, loader) -> tuple[float, float]:
    """(heatmap KD, heatmap agreement) over ``loader``."""
    student.eval()
    preds, maps = [], []
    dev = next(student.parameters()).device
    with torch.no_grad():
        for b in loader:
            preds.append(student(b["image"].to(dev)).float().cpu())
            maps.append(b["maps"][:, :17])
    p, m = torch.cat(preds), torch.cat(maps)
    return float(heatmap_kd(p, m)), heatmap_agreement(p, m)


def train_vit(student: nn.Module, labels: LabelSet, cfg: ViTTrainConfig = ViTTrainConfig(), *,
              teacher: nn.Module | None = None, vitkd: ViTKDConfig | None = None,
              progress: bool = True, device: str = "auto") -> DistillReport:
    """Train a ViT pose student on teacher pseudo-labels (heatmap KD), optionally with ViTKD.

    Args:
        student: a :class:`~edgepose.compression.students.vit.ViTPose` (square input: the label
            crops are square).
        labels: cached teacher labels (MoveNet Thunder maps at stride 4).
        cfg: optimisation options.
        teacher: a frozen ViT teacher with ``forward_features`` and the same token grid (needed
            with ``vitkd``).
        vitkd: ViTKD terms; None = heatmap KD only.
        progress: show a tqdm bar.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.

    Returns:
        The loss-curve report (validation = heatmap KD on held-out source files, and in
        ``terms["val_agreement"]`` the :func:`heatmap_agreement` at ``val_steps``); ``student``
        is left in eval mode.
    """
    from ..students.vit import MEAN, STD
    from ..train import Trainer, TrainerConfig

    if vitkd is not None and teacher is None:
        raise ConfigError("train_vit: vitkd needs a teacher (a ViT with forward_features)")
    h, w = student.cfg.input_size
    if h != w:
        raise ConfigError(f"train_vit: label crops are square; student input_size {student.cfg.input_size} is not")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1000)
    kd = None
    params = list(student.parameters())
    if vitkd is not None:
        if teacher.cfg.grid != student.cfg.grid:
            raise ConfigError(f"train_vit: teacher grid {teacher.cfg.grid} != student grid {student.cfg.grid}")
        kd = ViTKD(student.cfg.dim, teacher.cfg.dim, student.cfg.grid, vitkd)
        params += list(kd.parameters())
    w_heat = vitkd.w_heatmap if vitkd is not None else 1.0
    tr_idx, va_idx = labels.split(cfg.val_fraction, 0)  # same split for every seed: comparable val
    kw = dict(out_size=h, scale=np.full(3, 1.0 / STD), shift=np.full(3, -MEAN / STD), stride=student.cfg.stride)
    train_ds = PseudoLabelDataset(labels, tr_idx, augment_cfg=cfg.augment, seed=cfg.seed, **kw)
    val_loader = DataLoader(PseudoLabelDataset(labels, va_idx, augment_cfg=AugmentConfig.none(), **kw),
                            batch_size=32)
    module = ViTLoss(student, teacher if kd is not None else None, kd, w_heat, cfg.w_spatial_kl, gen)
    tcfg = TrainerConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         warmup=cfg.warmup, grad_clip=5.0, seed=cfg.seed * 7919, channels_last=False, device=device,
                         eval_every=cfg.eval_every, progress=progress, desc="vit" + ("kd" if kd else ""))
    rep = DistillReport(n_train=len(train_ds), n_val=len(va_idx))
    t0 = time.perf_counter()

    def validate(m):
        v, agree = _val(m.student, val_loader)
        log.info("val heatmap KD %.4f, agreement %.3f", v, agree)
        return {"loss": v, "agreement": agree}

    res = Trainer(module, train_ds, tcfg, validate=validate, params=params).fit()
    fill_report(rep, res.history)
    rep.val_steps = [v["step"] for v in res.val]
    rep.val = [v["loss"] for v in res.val]
    rep.terms["val_agreement"] = [v["agreement"] for v in res.val]
    student.eval()
    rep.seconds = time.perf_counter() - t0
    return rep
