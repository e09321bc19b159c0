"""Distillation losses for MoveNet-style heads, each returning a dict of named scalar tensors.

* ``kd_heatmap`` / ``kd_center``: offline KD from the teacher's (warped) heatmaps and centre map,
  binary cross-entropy with the teacher's probabilities as soft targets, weighted towards the
  peaks. Not MSE: on sigmoid outputs MSE's gradient vanishes where a pruned student's logits
  saturate near 0 (measured: MSE-trained pruned students kept near-zero heatmaps, PCK 11 %);
* ``task_offset`` / ``task_regress``: the task loss on the pseudo-labels, L1 on the sub-cell offset
  at each keypoint's cell and on the centre -> keypoint regression at the centre cell (what the
  decoder reads);
* ``ref``: optional online KD from the unpruned model's four head maps on the same input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Teacher keypoint score below which a pseudo-label keypoint is not supervised.
MIN_LABEL_SCORE = 0.3


def _gather_cells(t: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
    """t (N, C, h, w), iy/ix (N, K) long -> (N, K, C) values at those cells."""
    n, c, h, w = t.shape
    flat = (iy * w + ix).clamp(0, h * w - 1)
    return torch.gather(t.reshape(n, c, h * w), 2, flat.unsqueeze(1).expand(n, c, flat.shape[1])).permute(0, 2, 1)


def soft_bce(p: torch.Tensor, t: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities ``p`` against soft targets ``t``, minus the
    targets' own entropy (so a perfect match scores 0)."""
    eps = 1e-6
    p = p.clamp(eps, 1 - eps)
    t = t.clamp(0.0, 1.0)
    l = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    l = l + (t * torch.log(t.clamp(min=eps)) + (1 - t) * torch.log((1 - t).clamp(min=eps)))
    return (l if weight is None else l * weight).mean()


def kd_losses(heads: tuple[torch.Tensor, ...], maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Peak-weighted soft BCE to the teacher's heatmaps (maps[:, :17]) and centre map (maps[:, 17:])."""
    heat, ctr = heads[0], heads[1]
    th, tc = maps[:, :17], maps[:, 17:18]
    return {"kd_heatmap": soft_bce(heat, th, 1.0 + 10.0 * th) * 10.0,
            "kd_center": soft_bce(ctr, tc, 1.0 + 10.0 * tc) * 10.0}


def task_losses(heads: tuple[torch.Tensor, ...], keypoints: torch.Tensor, maps: torch.Tensor
                ) -> dict[str, torch.Tensor]:
    """L1 on offsets (at each labelled keypoint's cell) and regression (at the centre cell)."""
    _, _, reg, off = heads
    n, _, h, w = off.shape
    ky, kx = keypoints[..., 0] * h, keypoints[..., 1] * w  # map units
    inside = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
    valid = (inside & (keypoints[..., 2] >= MIN_LABEL_SCORE)).float()  # (N, 17)
    iy, ix = ky.floor().long().clamp(0, h - 1), kx.floor().long().clamp(0, w - 1)
    k = keypoints.shape[1]
    o = _gather_cells(off, iy, ix).reshape(n, k, k, 2)  # value of all 34 channels at each kp cell
    o = o[:, torch.arange(k), torch.arange(k)]  # (N, K, 2): keypoint k's own channels
    o_t = torch.stack([ky - iy.float(), kx - ix.float()], dim=-1)
    denom = valid.sum().clamp(min=1.0)
    l_off = ((o - o_t).abs().sum(-1) * valid).sum() / denom
    ci = maps[:, 17].reshape(n, -1).argmax(dim=1)
    cy, cx = torch.div(ci, w, rounding_mode="floor"), ci % w
    r = _gather_cells(reg, cy.unsqueeze(1), cx.unsqueeze(1)).reshape(n, k, 2)
    r_t = torch.stack([ky - 0.5 - cy.unsqueeze(1).float(), kx - 0.5 - cx.unsqueeze(1).float()], dim=-1)
    l_reg = ((r - r_t).abs().sum(-1) * valid).sum() / denom
    return {"task_offset": l_off, "task_regress": l_reg * 0.1}


def reference_loss(heads: tuple[torch.Tensor, ...], ref: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """Online KD from a reference model's heads (heatmaps / centre soft BCE, regress / offset L1)."""
    l = (soft_bce(heads[0], ref[0], 1.0 + 10.0 * ref[0]) + soft_bce(heads[1], ref[1], 1.0 + 10.0 * ref[1])) * 10.0
    l = l + 0.1 * (F.l1_loss(heads[2], ref[2]) + F.l1_loss(heads[3], ref[3]))
    return {"ref": l}
