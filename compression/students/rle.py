"""RLE: regression with a per-keypoint sigma, trained by residual log-likelihood estimation.

Li et al., "Human Pose Regression with Residual Log-likelihood Estimation" (ICCV 2021). The head
predicts a location ``mu`` and a scale ``sigma`` per keypoint; the error is standardised,
``e = (x - mu) / sigma``, and its density is modelled as a simple base distribution Q (Laplace)
times a residual G_phi learned by a small RealNVP flow, so the negative log-likelihood is

    -log P(x) = sum_d [log sigma_d + log 2 + |e_d|] - log G_phi(e) + log s      (d = x, y)

with s = E_{u ~ G_phi}[Q(u)] the normaliser of the product Q G_phi.

G_phi (the flow, :class:`RealNVP`) is only used in training and is not exported; at inference the
model outputs ``mu`` and ``sigma``, and the runtime reports ``sigma`` as the keypoint's uncertainty
(``edgepose.models.student.decode_rle``: score = 1 - mean(sigma)).

The paper (and mmpose / the authors' code) drop log s. Without it the loss can be lowered by
concentrating G_phi near 0 while inflating sigma (up to log 4 - log s_identity ~ 1.3 nats at the
flow's bounded scales); measured here, a student trained that way had a median sigma of 0.55 of
the crop for a median error of 0.05 on training crops: sigma still ranked the errors, but its size,
which the runtime turns into the keypoint score, was useless. :func:`rle_loss` therefore adds
``log s`` by default, estimated from reparameterised samples of the flow (``normalise=True``),
which makes P a proper density and sigma a calibrated scale. (The references also count
``log sigma`` twice; here it is counted once, as the likelihood above is written.)

The head (:class:`RLEHead`) regresses coordinates by a soft-argmax over per-joint logit maps on
the stride-4 features (integral regression; a fully connected regressor learns far slower on the
few thousand crops a CPU budget allows), and reads sigma at the predicted location (the expectation
of a per-joint sigma map under the same softmax), so the uncertainty is local to the joint.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from edgepose.errors import ConfigError

_LOG_2PI = math.log(2.0 * math.pi)
#: Sigma logit bias at init: sigmoid(-2.94) = 0.05 of the crop side.
_SIGMA_BIAS = -2.94


class RLEHead(nn.Module):
    """P2 (N, C, h, w) -> coords (N, K, 2) (x, y) in [0, 1] of the crop, sigma (N, K, 2) same units."""

    def __init__(self, cin: int, k: int):
        super().__init__()
        self.k = k
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True),
            nn.Conv2d(cin, cin, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True))
        self.logits = nn.Conv2d(cin, k, 1)
        self.sigma = nn.Conv2d(cin, 2 * k, 1)
        nn.init.constant_(self.sigma.bias, _SIGMA_BIAS)

    def forward(self, p2):
        f = self.conv(p2)
        n, _, h, w = f.shape
        prob = torch.softmax(self.logits(f).reshape(n, self.k, h * w), dim=-1)  # (N, K, HW)
        ys = (torch.arange(h, dtype=f.dtype, device=f.device) + 0.5) / h
        xs = (torch.arange(w, dtype=f.dtype, device=f.device) + 0.5) / w
        grid = torch.stack([xs.repeat(h), ys.repeat_interleave(w)], dim=1)  # (HW, 2) cell centres (x, y)
        coords = prob @ grid  # (N, K, 2)
        s = self.sigma(f).reshape(n, self.k, 2, h * w)
        sigma = torch.sigmoid((s * prob.unsqueeze(2)).sum(-1))
        return coords, sigma


class _Coupling(nn.Module):
    """One affine coupling layer's scale (tanh-bounded) and translation nets."""

    def __init__(self, hidden: int):
        super().__init__()
        self.s = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(),
                               nn.Linear(hidden, 2), nn.Tanh())
        self.t = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(),
                               nn.Linear(hidden, 2))


class RealNVP(nn.Module):
    """A 2-D RealNVP flow with a standard-normal base: the residual density G_phi of RLE.

    Args:
        layers: affine coupling layers (masks alternate x / y; 6 as in the RLE paper).
        hidden: width of each coupling net.
        identity_init: zero the last layer of every coupling net, so the flow starts as the
            identity and ``log_prob`` is the standard normal's (used by the tests). Otherwise the
            reference's small Xavier init (gain 0.01), which is near-identity too.
    """

    def __init__(self, layers: int = 6, hidden: int = 64, identity_init: bool = False):
        super().__init__()
        if layers < 1:
            raise ConfigError(f"RealNVP.layers must be >= 1, got {layers!r}")
        self.register_buffer("masks", torch.tensor([[0.0, 1.0], [1.0, 0.0]] * ((layers + 1) // 2))[:layers])
        self.couplings = nn.ModuleList(_Coupling(hidden) for _ in range(layers))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=0.01)
                nn.init.zeros_(m.bias)
        if identity_init:
            for c in self.couplings:
                for net in (c.s, c.t):
                    last = [m for m in net if isinstance(m, nn.Linear)][-1]
                    nn.init.zeros_(last.weight)

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> base: (z, log|det dz/dx|) for x (B, 2)."""
        z, log_det = x, x.new_zeros(x.shape[0])
        for i in reversed(range(len(self.couplings))):
            m = self.masks[i]
            z_ = m * z
            s = self.couplings[i].s(z_) * (1 - m)
            t = self.couplings[i].t(z_) * (1 - m)
            z = (1 - m) * (z - t) * torch.exp(-s) + z_
            log_det = log_det - s.sum(dim=1)
        return z, log_det

    def forward_map(self, z: torch.Tensor) -> torch.Tensor:
        """Base -> data: x = f(z) for z (B, 2) (the inverse of :meth:`inverse`)."""
        x = z
        for i, c in enumerate(self.couplings):
            m = self.masks[i]
            x_ = m * x
            s = c.s(x_) * (1 - m)
            t = c.t(x_) * (1 - m)
            x = x_ + (1 - m) * (x * torch.exp(s) + t)
        return x

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` reparameterised samples of G_phi (gradients flow into the flow's parameters)."""
        z = torch.randn(n, 2, generator=generator, device=self.masks.device, dtype=self.masks.dtype)
        return self.forward_map(z)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log G_phi(x) for x (B, 2)."""
        z, log_det = self.inverse(x)
        return -0.5 * (z ** 2).sum(dim=1) - _LOG_2PI + log_det


def laplace_log_normaliser(flow: RealNVP, samples: int = 512, generator: torch.Generator | None = None
                           ) -> torch.Tensor:
    """log s = log E_{u ~ G_phi}[Q(u)], Q the standard Laplace density per dimension (Monte Carlo)."""
    u = flow.sample(samples, generator)
    log_q = -(math.log(2.0) + u.abs()).sum(-1)
    return torch.logsumexp(log_q, dim=0) - math.log(samples)


def rle_loss(coords: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
             flow: RealNVP, *, residual: bool = True, normalise: bool = True, samples: int = 512,
             eps: float = 1e-9) -> torch.Tensor:
    """Residual log-likelihood loss, mean over weighted keypoints.

    Args:
        coords: (N, K, 2) predicted locations.
        sigma: (N, K, 2) predicted scales (> 0), same units.
        target: (N, K, 2) target locations.
        weight: (N, K) per-keypoint weight (0 = not supervised).
        flow: the residual density G_phi.
        residual: add the Laplace base term (RLE's residual formulation); False = the flow alone
            models the standardised error ("direct likelihood estimation").
        normalise: with ``residual``, add log s (see the module docstring); False = the paper's
            unnormalised loss.
        samples: flow samples of the log s estimate.
        eps: keeps the division finite.

    Returns:
        A scalar: sum(weight * nll) / max(sum(weight), 1) (+ log s).
    """
    e = (coords - target) / (sigma + eps)
    n, k, _ = e.shape
    log_phi = flow.log_prob(e.reshape(-1, 2)).reshape(n, k)
    nll = torch.log(sigma + eps).sum(-1) - log_phi
    loss = 0.0
    if residual:
        nll = nll + (math.log(2.0) + e.abs()).sum(-1)
        if normalise:
            loss = laplace_log_normaliser(flow, samples)
    return (nll * weight).sum() / weight.sum().clamp(min=1.0) + loss


class RLEObjective(nn.Module):
    """Training objective of an RLE student on teacher pseudo-labels (holds the flow).

    ``forward(batch)`` returns ``{"rle": loss}``; the batch is a :class:`PseudoLabelDataset`
    sample batch (``image``, ``keypoints`` (N, 17, 3) teacher (y, x, score) normalised).

    Args:
        student: a :class:`StudentNet` with the ``rle`` head.
        min_score: teacher keypoint score below which a keypoint is not supervised.
        flow: the residual flow (a new :class:`RealNVP` if None).
        normalise: add the normaliser log s (see the module docstring; False = the paper's loss).
    """

    def __init__(self, student: nn.Module, *, min_score: float = 0.3, flow: RealNVP | None = None,
                 normalise: bool = True):
        super().__init__()
        self.student = student
        self.flow = flow or RealNVP()
        self.min_score = min_score
        self.normalise = normalise

    def forward(self, batch) -> dict[str, torch.Tensor]:
        coords, sigma = self.student(batch["image"])
        kp = batch["keypoints"]
        target = kp[..., [1, 0]]
        inside = ((target >= 0) & (target <= 1)).all(-1)
        weight = (inside & (kp[..., 2] >= self.min_score)).float()
        return {"rle": rle_loss(coords, sigma, target, weight, self.flow, normalise=self.normalise)}


__all__ = ["RLEHead", "RealNVP", "rle_loss", "laplace_log_normaliser", "RLEObjective"]
