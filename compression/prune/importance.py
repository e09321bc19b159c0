"""Channel importance criteria for Torch-Pruning groups: magnitude, Taylor, content-aware.

Magnitude needs no data. Taylor and content-aware rank channels by ``|w * dL/dw|`` (Torch-
Pruning's Taylor importance) accumulated over a few batches of teacher-labelled crops, and differ
only in the objective ``L`` whose gradients are accumulated:

* ``taylor``: the distillation loss against the teacher (KD on heatmaps + task loss);
* ``content``: the energy of the head outputs *inside the keypoint regions* — Gaussian discs
  around each teacher keypoint (its heatmap and offset channels) and around the person centre
  (centre map and regression). A channel matters when it drives what the decoder reads there.
  This adapts content-aware pruning of GANs (Liu et al., CVPR 2021, which masks the face region
  of generated images) to pose: the "content of interest" is where the keypoints are.
"""

from __future__ import annotations

import torch

from ..distill.losses import kd_losses, task_losses
from edgepose.errors import ConfigError

#: Names accepted by PruneConfig.importance.
IMPORTANCES = ("magnitude", "taylor", "content")


def keypoint_discs(keypoints: torch.Tensor, maps: torch.Tensor, size: tuple[int, int], sigma: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian discs around teacher keypoints and the person centre, in map cells.

    Args:
        keypoints: (N, 17, 3) teacher (y, x, score), normalised.
        maps: (N, 18, h, w) teacher maps (the centre is the argmax of channel 17).
        size: (h, w) of the head maps.
        sigma: disc radius (Gaussian sigma) in cells.

    Returns:
        ``(kp_discs (N, 17, h, w) weighted by the keypoint score, centre_disc (N, 1, h, w))``.
    """
    h, w = size
    yy = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1) + 0.5
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w) + 0.5
    ky = keypoints[..., 0].unsqueeze(-1).unsqueeze(-1) * h
    kx = keypoints[..., 1].unsqueeze(-1).unsqueeze(-1) * w
    d = torch.exp(-((yy - ky) ** 2 + (xx - kx) ** 2) / (2 * sigma ** 2))
    d = d * keypoints[..., 2].unsqueeze(-1).unsqueeze(-1)
    n = maps.shape[0]
    ci = maps[:, 17].reshape(n, -1).argmax(dim=1)
    mh, mw = maps.shape[-2:]
    cy = (torch.div(ci, mw, rounding_mode="floor").float() + 0.5) * h / mh
    cx = (ci % mw).float().add(0.5) * w / mw
    c = torch.exp(-((yy - cy.view(n, 1, 1, 1)) ** 2 + (xx - cx.view(n, 1, 1, 1)) ** 2) / (2 * sigma ** 2))
    return d, c


def content_objective(heads, keypoints, maps, sigma: float) -> torch.Tensor:
    """Energy of the head outputs inside the keypoint / centre discs (the content-aware objective)."""
    heat, ctr, reg, off = heads
    d, c = keypoint_discs(keypoints, maps, heat.shape[-2:], sigma)
    d2 = d.repeat_interleave(2, dim=1)  # offsets are (dy, dx) per keypoint
    n = heat.shape[0]
    e = (d * heat).pow(2).sum() + (c * ctr).pow(2).sum()
    e = e + (d2 * off).pow(2).sum() + (c * reg).pow(2).sum() * 0.01
    return e / n


def taylor_objective(heads, keypoints, maps) -> torch.Tensor:
    """The distillation objective (teacher-map KD + pseudo-label task loss)."""
    terms = kd_losses(heads, maps)
    terms.update(task_losses(heads, keypoints, maps))
    return sum(terms.values())


def accumulate_gradients(model: torch.nn.Module, batches, kind: str, sigma: float = 2.0) -> int:
    """Run ``batches`` (dicts with image / keypoints / maps) and accumulate ``kind``'s gradients.

    Returns:
        The number of images used.
    """
    model.zero_grad(set_to_none=True)
    n = 0
    for b in batches:
        heads = model(b["image"])
        if kind == "content":
            loss = content_objective(heads, b["keypoints"], b["maps"], sigma)
        else:
            loss = taylor_objective(heads, b["keypoints"], b["maps"])
        loss.backward()
        n += len(b["image"])
    if n == 0:
        raise ConfigError(f"importance {kind!r} needs teacher-labelled batches; pass batches=... "
                         "(e.g. from PseudoLabelDataset) or use importance='magnitude'")
    return n


def make_importance(kind: str):
    """The Torch-Pruning importance object for ``kind``."""
    import torch_pruning as tp

    if kind == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind in ("taylor", "content"):
        return tp.importance.GroupTaylorImportance()
    raise ConfigError(f"unknown importance {kind!r}; valid choices: {', '.join(IMPORTANCES)}")
