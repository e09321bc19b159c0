"""Tiny temporal networks over one coordinate's signal (weights shared across joints and x / y).

* :class:`SmoothNet` (Zeng et al., ICCV 2021): fully connected layers along time over a window
  of T frames, residual blocks, a global skip; denoises every frame of the window. The runtime
  reads the frame it needs (the last one for zero lag, T-1-d for a delay of d frames).
* :class:`PriorSmoothNet`: the same network given two signals per coordinate, the causal One
  Euro filter's output and the raw track, returning the One Euro output plus a learned
  correction. At initialisation (zero decoder) it *is* the One Euro filter; training can only
  move it where the loss says One Euro is wrong (lag on fast moves, residual jitter). The zero-
  lag model the estimator runs (``smoother="learned"``) is this one.
* :class:`RecoveryNet` (DeciWatch idea, Zeng et al., ECCV 2022, with an MLP in place of the
  transformer): input the linear interpolation of sparse keyframes plus the keyframe mask,
  output a correction to it for every frame of the window (recovery and keyframe denoising).

Both take normalised channels (``edgepose.video._temporal.to_channels``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from edgepose.errors import ConfigError


@dataclass(frozen=True)
class TemporalNetConfig:
    """Size of a temporal network.

    Attributes:
        window: frames per window. 32 = ~1 s at 30 fps: enough context for human motion while
            keeping the zero-lag edge of the window close to the data that matters.
        hidden: width of the hidden layers; 64 keeps the ONNX file under 50 KB.
        blocks: residual blocks; 2 was as good as 3 in SmoothNet's ablation at small widths.
        dropout: inside the residual blocks (SmoothNet uses 0.5 at width 512; 0.1 at 64).
    """

    window: int = 32
    hidden: int = 64
    blocks: int = 2
    dropout: float = 0.1

    def __post_init__(self):
        if not isinstance(self.window, int) or self.window < 4:
            raise ConfigError(f"TemporalNetConfig.window must be an int >= 4, got {self.window!r}")
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise ConfigError(f"TemporalNetConfig.hidden must be an int >= 1, got {self.hidden!r}")
        if not isinstance(self.blocks, int) or self.blocks < 0:
            raise ConfigError(f"TemporalNetConfig.blocks must be an int >= 0, got {self.blocks!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"TemporalNetConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class _ResBlock(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(width, width), nn.LeakyReLU(0.1), nn.Dropout(dropout),
            nn.Linear(width, width), nn.LeakyReLU(0.1), nn.Dropout(dropout))

    def forward(self, x):
        return x + self.body(x)


class _TimeMlp(nn.Module):
    def __init__(self, n_in: int, cfg: TemporalNetConfig):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_in, cfg.hidden), nn.LeakyReLU(0.1))
        self.blocks = nn.Sequential(*[_ResBlock(cfg.hidden, cfg.dropout) for _ in range(cfg.blocks)])
        self.decoder = nn.Linear(cfg.hidden, cfg.window)
        nn.init.zeros_(self.decoder.weight)  # start as the identity / the interpolation
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x):
        return self.decoder(self.blocks(self.encoder(x)))


class SmoothNet(nn.Module):
    """(C, T) noisy normalised signals -> (C, T) smoothed."""

    kind = "smoother"

    def __init__(self, cfg: TemporalNetConfig = TemporalNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.net = _TimeMlp(cfg.window, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class PriorSmoothNet(nn.Module):
    """(C, K, T) [One Euro-prefiltered signal, raw signal(, keypoint score)] -> (C, T) smoothed.

    The runtime computes the prefilter itself (``edgepose.video._temporal.one_euro_batch``
    with the parameters stored in the model's ``edgepose.prefilter`` metadata). With
    ``scores=True`` a third input carries each keypoint's confidence (the same for its x and y
    channels): the uncertainty the One Euro filter cannot see.
    """

    kind = "smoother"
    prior = True

    def __init__(self, cfg: TemporalNetConfig = TemporalNetConfig(), *, scores: bool = False):
        super().__init__()
        self.cfg = cfg
        self.inputs = ("prefilter", "raw", "score") if scores else ("prefilter", "raw")
        self.net = _TimeMlp(len(self.inputs) * cfg.window, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] + self.net(x.flatten(1))


class RecoveryNet(nn.Module):
    """(C, 2, T) [interpolated signal, keyframe mask] -> (C, T) recovered signal."""

    kind = "recovery"

    def __init__(self, cfg: TemporalNetConfig = TemporalNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.net = _TimeMlp(2 * cfg.window, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] + self.net(x.flatten(1))


def build(kind: str, cfg: TemporalNetConfig, *, prior: bool = False, scores: bool = False) -> nn.Module:
    """A :class:`SmoothNet` (``"smoother"``; :class:`PriorSmoothNet` with ``prior``, given the
    keypoint scores too with ``scores``) or :class:`RecoveryNet` (``"recovery"``)."""
    if scores and not prior:
        raise ConfigError("scores=True needs prior=True (only PriorSmoothNet takes keypoint scores)")
    if kind == "smoother":
        return PriorSmoothNet(cfg, scores=scores) if prior else SmoothNet(cfg)
    if prior:
        raise ConfigError("prior=True (a One Euro prefilter input) is only for kind='smoother'")
    if kind == "recovery":
        return RecoveryNet(cfg)
    raise ConfigError(f"kind must be 'smoother' or 'recovery', got {kind!r}")
