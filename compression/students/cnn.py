"""A MobileNet-style CNN pose student with a heatmap, SimCC or RLE head.

Layout (``input_size`` = S, a multiple of 32)::

    encoder (shared)   stem 3x3/2 -> inverted residuals -> C2 (S/4) -> C3 (S/8)
    branch             C4 (S/16) -> C5 (S/32) -> FPN-lite neck (1x1 laterals, Resize x2 + add,
                       depthwise-separable 3x3) -> P2 (S/4) -> head

Every op is one every edge runtime has: conv, depthwise conv, BN (folded at export), ReLU6, add,
resize (bilinear x2 upsampling: no ConvTranspose, whose per-channel int8 scales LiteRT refused,
docs/design.md pitfalls), linear, softmax. The encoder / branch split is what OKDHP
(:mod:`..distill.okdhp`) shares and replicates; :class:`StudentNet` is one encoder + one branch.

Heads return training tensors (logits); :class:`StudentDeploy` turns them into what the runtime's
student card reads (``edgepose.models.student``): ``heatmaps`` (sigmoid), ``simcc_x`` /
``simcc_y`` (logits), ``coords`` / ``sigma`` (normalised to the crop).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .rle import RLEHead
from edgepose.errors import ConfigError

HEADS = ("heatmap", "simcc", "rle")
#: Output tensor names per head, in the order :class:`StudentDeploy` returns them.
OUTPUTS = {"heatmap": ("heatmaps",), "simcc": ("simcc_x", "simcc_y"), "rle": ("coords", "sigma")}
#: Heatmap logit bias at init: sigmoid(-2.19) = 0.1, so the empty background starts near 0.
_PRIOR_BIAS = -2.19


@dataclass(frozen=True)
class StudentConfig:
    """Architecture of :class:`StudentNet`.

    Attributes:
        input_size: square input side in px (multiple of 32; 128-192 fit a few minutes of CPU training).
        head: ``heatmap`` | ``simcc`` | ``rle``.
        num_keypoints: output joints (17 = COCO-17, what the teacher labels).
        width: channel multiplier of the whole net (1.0 = ~0.5 M parameters).
        branch_width: extra channel multiplier of the branch (stride 16/32 stages + neck + head);
            OKDHP's unbalanced branches differ here.
        branch_depth: multiplier of the branch's block repeats (3, 2, 2), rounded up.
        neck_channels: P2 channels before ``width`` x ``branch_width``.
        simcc_split: SimCC bins per input pixel (2.0, RTMPose's choice).
        simcc_hidden: hidden width of the SimCC head's shared linear layer.
        mean: per-channel input mean in 0-255 units (x = (rgb - mean) / std); 127.5 -> [-1, 1].
        std: per-channel input std in 0-255 units.
    """

    input_size: int = 128
    head: str = "heatmap"
    num_keypoints: int = 17
    width: float = 1.0
    branch_width: float = 1.0
    branch_depth: float = 1.0
    neck_channels: int = 64
    simcc_split: float = 2.0
    simcc_hidden: int = 128
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    version: int = 1

    def __post_init__(self):
        if self.input_size < 32 or self.input_size % 32:
            raise ConfigError(f"StudentConfig.input_size must be a multiple of 32 (>= 32), got {self.input_size!r}")
        if self.head not in HEADS:
            raise ConfigError(f"StudentConfig.head must be one of {', '.join(HEADS)}, got {self.head!r}")
        for f in ("width", "branch_width", "branch_depth", "simcc_split"):
            if getattr(self, f) <= 0:
                raise ConfigError(f"StudentConfig.{f} must be > 0, got {getattr(self, f)!r}")
        if self.num_keypoints < 1:
            raise ConfigError(f"StudentConfig.num_keypoints must be >= 1, got {self.num_keypoints!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"StudentConfig.mean/std must be 3 values each, std > 0; got {self.mean!r}, {self.std!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def from_dict(d: dict) -> "StudentConfig":
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return StudentConfig(**d)


def _ch(c: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(c + divisor / 2) // divisor * divisor)


class ConvBNAct(nn.Sequential):
    """Conv -> BN -> ReLU6 (``act=False``: no activation, the linear bottleneck)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> depthwise 3x3 -> 1x1 linear project (+ identity)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hid = cin * expand
        layers = [] if expand == 1 else [ConvBNAct(cin, hid, 1)]
        layers += [ConvBNAct(hid, hid, 3, stride, groups=hid), ConvBNAct(hid, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


def _stage(cin: int, cout: int, n: int, stride: int, expand: int) -> nn.Sequential:
    return nn.Sequential(*[InvertedResidual(cin if i == 0 else cout, cout, stride if i == 0 else 1, expand)
                           for i in range(n)])


def dw_sep(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, both BN + ReLU6."""
    return nn.Sequential(ConvBNAct(cin, cin, 3, stride, groups=cin), ConvBNAct(cin, cout, 1))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear resize (exports as Resize / RESIZE_BILINEAR)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class Encoder(nn.Module):
    """The shared part: stem + stages to stride 8. Returns (C2, C3)."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        w = cfg.width
        c1, c2, c3 = _ch(16 * w), _ch(24 * w), _ch(32 * w)
        self.stem = nn.Sequential(ConvBNAct(3, c1, 3, 2), _stage(c1, c1, 1, 1, 1))
        self.stage2 = _stage(c1, c2, 2, 2, 4)
        self.stage3 = _stage(c2, c3, 3, 2, 4)
        self.channels = (c2, c3)

    def forward(self, x):
        c2 = self.stage2(self.stem(x))
        return c2, self.stage3(c2)


class HeatmapHead(nn.Module):
    """P2 -> (N, K, S/4, S/4) heatmap logits."""

    def __init__(self, cin: int, k: int):
        super().__init__()
        self.conv = dw_sep(cin, cin)
        self.out = nn.Conv2d(cin, k, 1)
        nn.init.constant_(self.out.bias, _PRIOR_BIAS)

    def forward(self, p2):
        return self.out(self.conv(p2))


class SimCCHead(nn.Module):
    """P2 -> stride-8 per-joint maps -> flatten -> shared linear -> x / y bin logits (SimCC)."""

    def __init__(self, cin: int, cfg: StudentConfig):
        super().__init__()
        k, s = cfg.num_keypoints, cfg.input_size
        self.conv = dw_sep(cin, cin, stride=2)
        self.joints = nn.Conv2d(cin, k, 1)
        self.hidden = nn.Sequential(nn.Linear((s // 8) ** 2, cfg.simcc_hidden), nn.ReLU6())
        bins = int(round(s * cfg.simcc_split))
        self.fc_x = nn.Linear(cfg.simcc_hidden, bins)
        self.fc_y = nn.Linear(cfg.simcc_hidden, bins)

    def forward(self, p2):
        j = self.joints(self.conv(p2))
        h = self.hidden(j.flatten(2))  # (N, K, hidden)
        return self.fc_x(h), self.fc_y(h)


class Branch(nn.Module):
    """Stride-16/32 stages + FPN-lite neck + head: the part OKDHP replicates per branch."""

    def __init__(self, cfg: StudentConfig, enc_channels: tuple[int, int]):
        super().__init__()
        w = cfg.width * cfg.branch_width
        n4, n4b, n5 = (max(1, math.ceil(r * cfg.branch_depth)) for r in (3, 2, 2))
        c2, c3 = enc_channels
        c4, c4b, c5, cn = _ch(64 * w), _ch(96 * w), _ch(128 * w), _ch(cfg.neck_channels * w)
        self.stage4 = nn.Sequential(_stage(c3, c4, n4, 2, 4), _stage(c4, c4b, n4b, 1, 4))
        self.stage5 = _stage(c4b, c5, n5, 2, 4)
        self.lat5, self.lat4 = nn.Conv2d(c5, cn, 1), nn.Conv2d(c4b, cn, 1)
        self.lat3, self.lat2 = nn.Conv2d(c3, cn, 1), nn.Conv2d(c2, cn, 1)
        self.smooth4, self.smooth3, self.smooth2 = dw_sep(cn, cn), dw_sep(cn, cn), dw_sep(cn, cn)
        self.out_channels = cn
        if cfg.head == "heatmap":
            self.head = HeatmapHead(cn, cfg.num_keypoints)
        elif cfg.head == "simcc":
            self.head = SimCCHead(cn, cfg)
        else:
            self.head = RLEHead(cn, cfg.num_keypoints)

    def features(self, c2, c3) -> torch.Tensor:
        """(C2, C3) -> P2, the stride-4 neck output."""
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        p = self.lat5(c5)
        p = self.smooth4(self.lat4(c4) + upsample2(p))
        p = self.smooth3(self.lat3(c3) + upsample2(p))
        return self.smooth2(self.lat2(c2) + upsample2(p))

    def forward(self, c2, c3):
        return self.head(self.features(c2, c3))


class StudentNet(nn.Module):
    """Encoder + one branch. ``forward`` returns the head's training tensors:

    heatmap: logits (N, K, S/4, S/4); simcc: (x logits (N, K, S*split), y logits); rle: (coords
    (N, K, 2) as (x, y) in [0, 1] of the crop, sigma (N, K, 2) in the same units).
    """

    def __init__(self, cfg: StudentConfig = StudentConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.branch = Branch(cfg, self.encoder.channels)

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.cfg.input_size, self.cfg.input_size)

    def norm(self) -> tuple[list[float], list[float]]:
        """(scale, shift) so that ``x = rgb * scale + shift`` (what PseudoLabelDataset takes)."""
        scale = [1.0 / s for s in self.cfg.std]
        return scale, [-m / s for m, s in zip(self.cfg.mean, self.cfg.std)]

    def forward(self, x):
        return self.branch(*self.encoder(x))


class StudentDeploy(nn.Module):
    """The exported graph: NCHW float input -> the outputs the runtime student card decodes."""

    def __init__(self, net: StudentNet):
        super().__init__()
        self.net = net
        self.head = net.cfg.head

    def forward(self, x):
        out = self.net(x)
        if self.head == "heatmap":
            return torch.sigmoid(out)
        return out  # simcc: (x logits, y logits); rle: (coords, sigma)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["HEADS", "OUTPUTS", "StudentConfig", "StudentNet", "StudentDeploy", "Encoder", "Branch",
           "HeatmapHead", "SimCCHead", "InvertedResidual", "ConvBNAct", "dw_sep", "upsample2",
           "count_parameters"]
