"""OKDHP: online knowledge distillation for heatmap pose students.

Li et al., "Online Knowledge Distillation for Efficient Pose Estimation" (ICCV 2021). One
encoder is shared by ``m`` branches (each the stride-16/32 stages + neck + heatmap head of
:class:`..students.cnn.StudentNet`; branches may differ in width and depth: *unbalanced*). A
Feature Aggregation Unit (FAU) looks at the shared features through parallel 3x3 / 5x5 / 7x7
convolutions, pools them globally and predicts one weight per branch and joint, softmax-normalised
across branches; the weighted sum of the branches' heatmap logits is the ensemble, which

* is itself supervised by the (offline) teacher heatmaps, like every branch, and
* teaches every branch online: pixel-wise KL divergence between each joint's spatial softmax of
  the (detached) ensemble and of the branch, at temperature T (scaled by T^2).

At export only one branch remains (:meth:`OKDHP.branch_student`: the best by validation loss, or
a chosen one, e.g. the smallest of an unbalanced set), a plain :class:`StudentNet`, so inference
costs nothing extra. The FAU here reads the shared encoder's last (stride-8) features.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ..students.cnn import Branch, ConvBNAct, Encoder, StudentConfig, StudentNet
from ..students.losses import teacher_kd_terms
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OKDHPConfig:
    """OKDHP options.

    Attributes:
        branches: one (branch_width, branch_depth) multiplier pair per branch; m = len. Equal
            pairs = balanced (the paper's default, m = 3); unequal = unbalanced.
        temperature: spatial-softmax temperature of the KL term (1: heatmap logits are already
            sharp; the paper's maps are not logits, so there is no value to copy).
        loss: per-pixel teacher KD loss, ``mse`` or ``bce`` (as plain KD: :class:`HeatmapKD`).
        w_spatial: weight of the spatial KL to the teacher maps inside the teacher KD terms (as
            plain KD's ``w_spatial``; keep them equal when comparing).
        w_teacher: weight of each branch's offline KD loss to the teacher heatmaps.
        w_ensemble: weight of the ensemble's KD loss to the teacher heatmaps (trains the FAU).
        w_kl: weight of each branch's KL to the ensemble (the online distillation).
        fau_channels: channels of each of the FAU's three parallel convolutions.
        fau_kernels: the FAU's parallel kernel sizes.
    """

    branches: tuple[tuple[float, float], ...] = ((1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    temperature: float = 1.0
    loss: str = "mse"
    w_spatial: float = 0.0
    w_teacher: float = 1.0
    w_ensemble: float = 1.0
    w_kl: float = 1.0
    fau_channels: int = 32
    fau_kernels: tuple[int, ...] = (3, 5, 7)
    version: int = 1

    def __post_init__(self):
        if len(self.branches) < 2:
            raise ConfigError(f"OKDHPConfig.branches needs >= 2 branches, got {len(self.branches)}")
        if any(len(b) != 2 or min(b) <= 0 for b in self.branches):
            raise ConfigError(f"OKDHPConfig.branches must be (width, depth) pairs > 0, got {self.branches!r}")
        if self.loss not in ("mse", "bce"):
            raise ConfigError(f"OKDHPConfig.loss must be 'mse' or 'bce', got {self.loss!r}")
        if self.w_spatial < 0:
            raise ConfigError(f"OKDHPConfig.w_spatial must be >= 0, got {self.w_spatial!r}")
        if self.temperature <= 0:
            raise ConfigError(f"OKDHPConfig.temperature must be > 0, got {self.temperature!r}")
        for f in ("w_teacher", "w_ensemble", "w_kl"):
            if getattr(self, f) < 0:
                raise ConfigError(f"OKDHPConfig.{f} must be >= 0, got {getattr(self, f)!r}")
        if self.fau_channels < 1 or any(k < 1 or k % 2 == 0 for k in self.fau_kernels):
            raise ConfigError(f"OKDHPConfig.fau_channels must be >= 1 and fau_kernels odd, got "
                             f"{self.fau_channels!r}, {self.fau_kernels!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def pixelwise_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
                 ) -> torch.Tensor:
    """Mean over (sample, joint) of KL(softmax_hw(t / T) || softmax_hw(s / T)) x T^2.

    Args:
        student_logits, teacher_logits: (N, K, h, w) heatmap logits; the teacher side is used as
            given (detach it for a fixed target).
        temperature: softmax temperature T.
    """
    n, k = student_logits.shape[:2]
    s = torch.log_softmax(student_logits.reshape(n, k, -1) / temperature, dim=-1)
    t = torch.log_softmax(teacher_logits.reshape(n, k, -1) / temperature, dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean() * temperature ** 2


class FeatureAggregationUnit(nn.Module):
    """Shared features -> (N, m, K) branch weights per joint, softmax across branches."""

    def __init__(self, cin: int, branches: int, joints: int, *, channels: int = 32,
                 kernels: tuple[int, ...] = (3, 5, 7)):
        super().__init__()
        self.m, self.k = branches, joints
        self.convs = nn.ModuleList(ConvBNAct(cin, channels, k) for k in kernels)
        self.fc = nn.Linear(channels * len(kernels), branches * joints)
        nn.init.zeros_(self.fc.weight)  # start as the plain mean of the branches
        nn.init.zeros_(self.fc.bias)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        z = torch.cat([c(feat).mean(dim=(2, 3)) for c in self.convs], dim=1)
        return torch.softmax(self.fc(z).reshape(-1, self.m, self.k), dim=1)


class OKDHP(nn.Module):
    """Multi-branch heatmap student trained by OKDHP; ``forward(batch)`` returns the loss terms.

    Args:
        student_cfg: the architecture (``head="heatmap"``); each branch overrides its
            ``branch_width`` / ``branch_depth`` with its pair from ``cfg.branches``.
        cfg: OKDHP options.
    """

    def __init__(self, student_cfg: StudentConfig, cfg: OKDHPConfig = OKDHPConfig()):
        super().__init__()
        if student_cfg.head != "heatmap":
            raise ConfigError(f"OKDHP distils heatmap students; StudentConfig.head is {student_cfg.head!r}")
        self.cfg = cfg
        self.student_cfg = student_cfg
        self.branch_cfgs = [replace(student_cfg, branch_width=w, branch_depth=d) for w, d in cfg.branches]
        self.encoder = Encoder(student_cfg)
        self.branches = nn.ModuleList(Branch(c, self.encoder.channels) for c in self.branch_cfgs)
        self.fau = FeatureAggregationUnit(self.encoder.channels[1], len(self.branches), student_cfg.num_keypoints,
                                          channels=cfg.fau_channels, kernels=cfg.fau_kernels)

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.student_cfg.input_size, self.student_cfg.input_size)

    def predict(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Image batch -> (per-branch logits, ensemble logits, FAU weights (N, m, K))."""
        c2, c3 = self.encoder(x)
        outs = [b(c2, c3) for b in self.branches]
        w = self.fau(c3)
        ens = sum(w[:, i, :, None, None] * o for i, o in enumerate(outs))
        return outs, ens, w

    def forward(self, batch) -> dict[str, torch.Tensor]:
        outs, ens, _ = self.predict(batch["image"])
        target = batch["maps"][:, :ens.shape[1]]
        c = self.cfg
        terms: dict[str, torch.Tensor] = {}
        for name, outputs, w in (("branches", outs, c.w_teacher), ("ensemble", [ens], c.w_ensemble)):
            for o in outputs:
                for k, v in teacher_kd_terms(o, target, kind=c.loss, w_spatial=c.w_spatial).items():
                    key = f"{k}_{name}"
                    terms[key] = terms.get(key, 0.0) + w * v
        if c.w_kl:
            t = ens.detach()
            terms["okd_kl"] = c.w_kl * sum(pixelwise_kl(o, t, c.temperature) for o in outs)
        return terms

    @torch.no_grad()
    def branch_losses(self, loader) -> list[float]:
        """Each branch's mean teacher-KD loss (all its teacher terms) over ``loader``, eval mode."""
        was = self.training
        self.eval()
        tot, n = [0.0] * len(self.branches), 0
        for batch in loader:
            outs, _, _ = self.predict(batch["image"])
            target = batch["maps"][:, :outs[0].shape[1]]
            b = len(batch["image"])
            for i, o in enumerate(outs):
                tot[i] += float(sum(teacher_kd_terms(o, target, kind=self.cfg.loss,
                                                     w_spatial=self.cfg.w_spatial).values())) * b
            n += b
        self.train(was)
        return [t / max(n, 1) for t in tot]

    def branch_student(self, index: int) -> StudentNet:
        """Branch ``index`` with the shared encoder as a standalone :class:`StudentNet` (eval mode)."""
        if not 0 <= index < len(self.branches):
            raise ConfigError(f"branch index must be in [0, {len(self.branches)}), got {index!r}")
        net = StudentNet(self.branch_cfgs[index])
        net.encoder.load_state_dict(self.encoder.state_dict())
        net.branch.load_state_dict(self.branches[index].state_dict())
        return net.eval()

    def best_student(self, loader) -> tuple[StudentNet, int, list[float]]:
        """The branch with the lowest validation loss on ``loader``: (student, index, all losses)."""
        losses = self.branch_losses(loader)
        best = min(range(len(losses)), key=losses.__getitem__)
        log.info("OKDHP branch validation losses %s -> branch %d", [round(v, 4) for v in losses], best)
        return self.branch_student(best), best, losses


__all__ = ["OKDHPConfig", "OKDHP", "FeatureAggregationUnit", "pixelwise_kl"]
