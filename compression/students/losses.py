"""Offline KD losses of the CNN students on cached teacher pseudo-labels ("plain KD").

* heatmap head: peak-weighted MSE (or BCE) between the student's sigmoid heatmaps and the
  teacher's (warped) heatmaps, the repo's heatmap-KD loss (:func:`..distill.losses.kd_losses`)
  for a student whose maps need not be MoveNet-shaped, optionally plus a spatial KL between the
  teacher map (normalised to a distribution) and the student's spatial softmax (localisation);
* SimCC head: KL divergence from Gaussian-smoothed 1-D labels at the teacher's keypoints (SimCC's
  label smoothing) to the softmax over bins, per axis, weighted by teacher confidence.

Objectives (``nn.Module`` s whose ``forward(batch)`` returns a dict of named scalar losses) are what
:func:`..train_student.train` optimises; :class:`..students.rle.RLEObjective` and
:class:`..distill.okdhp.OKDHP` follow the same protocol.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from edgepose.errors import ConfigError

#: Teacher keypoint score below which a keypoint is not supervised (as in distill.losses).
MIN_LABEL_SCORE = 0.3
#: Weight of a heatmap pixel = 1 + PEAK_WEIGHT x teacher value (most of a map is ~0).
PEAK_WEIGHT = 10.0


def heatmap_kd_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Peak-weighted per-pixel loss to the teacher heatmaps.

    ``mse``: mean((1 + 10 t) (sigmoid(logits) - t)^2) x 100 (the repo's heatmap KD);
    ``bce``: mean((1 + 10 t) BCE(logits, t)) x 10 (no sigmoid saturation: learns faster from scratch).

    Args:
        logits: (N, K, h, w) student heatmap logits.
        target: (N, K, h, w) teacher heatmaps in [0, 1].
        kind: ``mse`` or ``bce``.
    """
    w = 1.0 + PEAK_WEIGHT * target
    if kind == "mse":
        return (w * (torch.sigmoid(logits) - target) ** 2).mean() * 100.0
    if kind == "bce":
        return (w * F.binary_cross_entropy_with_logits(logits, target, reduction="none")).mean() * 10.0
    raise ConfigError(f"heatmap loss kind must be 'mse' or 'bce', got {kind!r}")


def spatial_kd_loss(logits: torch.Tensor, target: torch.Tensor, *, min_peak: float = MIN_LABEL_SCORE
                    ) -> torch.Tensor:
    """KL(teacher map normalised to a distribution || spatial softmax of the logits), per joint.

    Joints whose teacher peak is below ``min_peak`` (not visible / outside the crop) are skipped;
    mean over the rest. This is the localisation part of heatmap KD (what the argmax decoder needs).
    """
    n, k = logits.shape[:2]
    t = target.reshape(n, k, -1)
    valid = (t.amax(-1) >= min_peak).float()
    q = t / t.sum(-1, keepdim=True).clamp(min=1e-6)
    logp = F.log_softmax(logits.reshape(n, k, -1), dim=-1)
    kl = (q * (torch.log(q.clamp(min=1e-12)) - logp)).sum(-1)
    return (kl * valid).sum() / valid.sum().clamp(min=1.0)


def keypoint_weights(keypoints: torch.Tensor, min_score: float = MIN_LABEL_SCORE) -> torch.Tensor:
    """(N, K, 3) teacher (y, x, score) -> (N, K) 1.0 where supervised (confident and inside the crop)."""
    yx = keypoints[..., :2]
    inside = ((yx >= 0) & (yx <= 1)).all(-1)
    return (inside & (keypoints[..., 2] >= min_score)).float()


def simcc_targets(pos: torch.Tensor, bins: int, sigma: float) -> torch.Tensor:
    """Gaussian 1-D labels: pos (N, K) in bin units -> (N, K, bins), each row summing to 1.

    Bin i's centre is at i + 0.5 (the runtime decoder's convention).
    """
    centres = torch.arange(bins, dtype=pos.dtype, device=pos.device) + 0.5
    g = torch.exp(-0.5 * ((centres - pos.unsqueeze(-1)) / sigma) ** 2)
    return g / g.sum(-1, keepdim=True).clamp(min=1e-12)


def simcc_kd_loss(logits_x: torch.Tensor, logits_y: torch.Tensor, keypoints: torch.Tensor, *,
                  sigma: float, min_score: float = MIN_LABEL_SCORE) -> torch.Tensor:
    """KL(Gaussian label || softmax(logits)) summed over x and y, mean over supervised keypoints.

    Args:
        logits_x, logits_y: (N, K, Wx), (N, K, Hy) bin logits.
        keypoints: (N, K, 3) teacher (y, x, score) normalised to the student crop.
        sigma: label Gaussian's std in bins.
        min_score: teacher score needed to supervise a keypoint.
    """
    w = keypoint_weights(keypoints, min_score)
    loss = 0.0
    for logits, coord in ((logits_x, keypoints[..., 1]), (logits_y, keypoints[..., 0])):
        t = simcc_targets(coord * logits.shape[-1], logits.shape[-1], sigma)
        logp = F.log_softmax(logits, dim=-1)
        kl = (t * (torch.log(t.clamp(min=1e-12)) - logp)).sum(-1)  # (N, K)
        loss = loss + (kl * w).sum() / w.sum().clamp(min=1.0)
    return loss


def teacher_kd_terms(logits: torch.Tensor, target: torch.Tensor, *, kind: str = "mse", w_spatial: float = 0.0
                     ) -> dict[str, torch.Tensor]:
    """Offline heatmap KD terms: ``kd_heatmap`` (per pixel) and, if ``w_spatial``, ``kd_spatial``."""
    terms = {"kd_heatmap": heatmap_kd_loss(logits, target, kind)}
    if w_spatial:
        terms["kd_spatial"] = w_spatial * spatial_kd_loss(logits, target)
    return terms


class HeatmapKD(nn.Module):
    """Plain offline KD of a heatmap student from the teacher's heatmaps.

    Args:
        student: a :class:`StudentNet` with the ``heatmap`` head.
        kind: per-pixel loss, ``mse`` or ``bce`` (:func:`heatmap_kd_loss`).
        w_spatial: weight of :func:`spatial_kd_loss` (0 = off).
    """

    def __init__(self, student: nn.Module, *, kind: str = "mse", w_spatial: float = 0.0):
        super().__init__()
        if kind not in ("mse", "bce"):
            raise ConfigError(f"HeatmapKD.kind must be 'mse' or 'bce', got {kind!r}")
        if w_spatial < 0:
            raise ConfigError(f"HeatmapKD.w_spatial must be >= 0, got {w_spatial!r}")
        self.student, self.kind, self.w_spatial = student, kind, w_spatial

    def forward(self, batch) -> dict[str, torch.Tensor]:
        logits = self.student(batch["image"])
        return teacher_kd_terms(logits, batch["maps"][:, :logits.shape[1]], kind=self.kind, w_spatial=self.w_spatial)


class SimCCKD(nn.Module):
    """KD of a SimCC student from the teacher's keypoints: ``{"kd_simcc": ...}``.

    Args:
        student: a :class:`StudentNet` with the ``simcc`` head.
        sigma: label std in bins (RTMPose uses ~5 bins at 256 px with split 2; scaled to the input).
    """

    def __init__(self, student: nn.Module, *, sigma: float | None = None):
        super().__init__()
        self.student = student
        cfg = student.cfg
        self.sigma = sigma if sigma is not None else 5.0 * cfg.input_size / 256.0 * cfg.simcc_split / 2.0
        if self.sigma <= 0:
            raise ConfigError(f"SimCCKD.sigma must be > 0, got {self.sigma!r}")

    def forward(self, batch) -> dict[str, torch.Tensor]:
        lx, ly = self.student(batch["image"])
        return {"kd_simcc": simcc_kd_loss(lx, ly, batch["keypoints"], sigma=self.sigma)}


__all__ = ["MIN_LABEL_SCORE", "heatmap_kd_loss", "spatial_kd_loss", "teacher_kd_terms", "keypoint_weights",
           "simcc_targets", "simcc_kd_loss", "HeatmapKD", "SimCCKD"]
