"""DKD for video (Nie et al., ICCV 2019): a small frame encoder plus a pose-kernel distillator.

Per frame t the encoder turns the crop into stride-4 features ``F_t`` (N, C, h, w) and a plain
1x1 head gives per-frame heatmap logits. The **pose-kernel distillator** runs at the end of each
frame's pass: it pools ``F_t`` under each joint's normalised heatmap ``H_t`` and maps the 17
pooled descriptors (plus a learned joint embedding) through a small MLP to 17 **pose kernels**
of size C x k x k. On frame t+1 those kernels are convolved with ``F_{t+1}`` (unfold + MatMul, a
dynamic convolution every runtime supports) to localise each joint; the kernels carry what this
person's joints looked like one frame earlier, and convolution makes the match
translation-invariant (the crop moves with the tracker).

``gate`` (1 on tracked frames, 0 on keyframes) switches the kernel term: on a keyframe (first
frame, after a lost track) the model is exactly the per-frame student. With ``residual`` (default)
the kernel logits add to the per-frame logits; without it they replace them. With 1x1 kernels and
``residual`` the two are one MatMul with weights ``W_head + gate x K_t`` (a per-frame adapted head),
so DKD costs the per-frame student plus the pooling (~7 % here).

The runtime needs a single graph: ``(image, kernels, gate) -> (heatmaps, next kernels)``
(:class:`DKDStep`, exported by :func:`export_dkd` / :func:`export_dkd_tflite` with
``edgepose.card = dkd``); the state carried between frames is one (1, 17, C k k) tensor.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .vit import MEAN, STD
from edgepose.errors import CompressionError, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DKDConfig:
    """Shape of a :class:`DKDPose`.

    Attributes:
        input_size: square crop side in pixels (128: the per-frame students' size here).
        widths: encoder channels at strides 2, 4, 8, 16 (MobileNet-style depthwise-separable
            blocks; ~25 MMAC at 128 px).
        feat_channels: C of the stride-4 features the heads and kernels read.
        kernel_size: spatial side k of each pose kernel (1: an appearance match that merges with
            the per-frame head, ~7 % extra cost; 3 adds local context at ~+70 % MACs for this
            tiny encoder).
        desc_channels: width of the distillator's per-joint descriptor.
        residual: kernel logits add to the per-frame head's (True) or replace them (False).
        num_keypoints: joints (17: COCO).
    """

    input_size: int = 128
    widths: tuple[int, int, int, int] = (16, 24, 48, 96)
    feat_channels: int = 48
    kernel_size: int = 1
    desc_channels: int = 32
    residual: bool = True
    num_keypoints: int = 17

    def __post_init__(self):
        if self.input_size % 16:
            raise ConfigError(f"DKDConfig.input_size must be a multiple of 16, got {self.input_size!r}")
        if self.kernel_size not in (1, 3, 5):
            raise ConfigError(f"DKDConfig.kernel_size must be 1, 3 or 5, got {self.kernel_size!r}")

    @property
    def kernel_dim(self) -> int:
        """Length of one flattened pose kernel (C x k x k)."""
        return self.feat_channels * self.kernel_size ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def _cbr(cin, cout, k=3, s=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


def _dws(cin, cout, s=1):
    return nn.Sequential(_cbr(cin, cin, 3, s, groups=cin), _cbr(cin, cout, 1))


class FrameEncoder(nn.Module):
    """MobileNet-style encoder with a two-step Resize + Conv neck -> stride-4 features."""

    def __init__(self, cfg: DKDConfig):
        super().__init__()
        w1, w2, w3, w4 = cfg.widths
        c = cfg.feat_channels
        self.s2 = _cbr(3, w1, 3, 2)
        self.s4 = nn.Sequential(_dws(w1, w2, 2), _dws(w2, w2))
        self.s8 = nn.Sequential(_dws(w2, w3, 2), _dws(w3, w3))
        self.s16 = nn.Sequential(_dws(w3, w4, 2), _dws(w4, w4), _dws(w4, w4))
        self.lat16, self.lat8, self.lat4 = _cbr(w4, c, 1), _cbr(w3, c, 1), _cbr(w2, c, 1)
        self.out = _dws(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f4 = self.s4(self.s2(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        y = F.interpolate(self.lat16(f16), scale_factor=2.0, mode="bilinear", align_corners=False) + self.lat8(f8)
        y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False) + self.lat4(f4)
        return self.out(y)


def unfold_same(f: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C * k * k, h * w): the k x k neighbourhood of every cell, zero padded.

    Written as pad + slices + concat (no Im2Col op needed at export); channel order is
    (dy, dx, c), matching the kernel layout of :meth:`DKDPose.localise`.
    """
    n, c, h, w = f.shape
    if k == 1:
        return f.reshape(n, c, h * w)
    p = k // 2
    fp = F.pad(f, (p, p, p, p))
    cols = [fp[:, :, dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)]
    return torch.cat(cols, dim=1).reshape(n, c * k * k, h * w)


class DKDPose(nn.Module):
    """Frame encoder + per-frame head + pose-kernel distillator.

    Args:
        cfg: the shape.
    """

    def __init__(self, cfg: DKDConfig = DKDConfig()):
        super().__init__()
        self.cfg = cfg
        c, d, j = cfg.feat_channels, cfg.desc_channels, cfg.num_keypoints
        self.encoder = FrameEncoder(cfg)
        self.head = nn.Conv2d(c, j, 1)
        nn.init.constant_(self.head.bias, -4.0)  # start near an empty heatmap (sigmoid ~0.02)
        self.proj = nn.Linear(c, d)
        self.joint_embed = nn.Parameter(torch.zeros(1, j, d))
        self.to_kernel = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(d, d), nn.ReLU(inplace=True),
                                       nn.Linear(d, cfg.kernel_dim))
        self.kernel_bias = nn.Parameter(torch.zeros(1, j, 1))
        self.kernel_scale = cfg.kernel_dim ** -0.5

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height), the runtime cards' convention."""
        return self.cfg.input_size, self.cfg.input_size

    @property
    def stride(self) -> int:
        return 4

    def kernels(self, feats: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
        """The distillator: features (N, C, h, w) + heatmaps (N, J, h, w) -> kernels (N, J, C k k)."""
        wgt = heat.flatten(2)
        wgt = wgt / (wgt.sum(dim=2, keepdim=True) + 1e-6)  # each joint's heatmap as pooling weights
        pooled = wgt @ feats.flatten(2).transpose(1, 2)  # (N, J, C): the joint's features
        return self.to_kernel(self.proj(pooled) + self.joint_embed)

    def localise(self, feats: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Convolve each joint's kernel with the features: (N, J, h, w) logits."""
        n, _, h, w = feats.shape
        cols = unfold_same(feats, self.cfg.kernel_size)  # (N, C k k, hw)
        logits = (kernels @ cols) * self.kernel_scale + self.kernel_bias
        return logits.reshape(n, -1, h, w)

    def step(self, x: torch.Tensor, kernels: torch.Tensor | None, gate: torch.Tensor | float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One frame: (heatmaps, next kernels, features). ``kernels`` None = keyframe."""
        feats = self.encoder(x)
        if kernels is None:
            logits = self.head(feats)
        else:
            g = gate if torch.is_tensor(gate) else torch.tensor(float(gate))
            g = g.reshape(-1, 1, 1) if g.numel() > 1 else g.reshape(1, 1, 1)
            if self.cfg.residual and self.cfg.kernel_size == 1:  # one MatMul: adapted head weights
                n, c, h, w = feats.shape
                wgt = self.head.weight.reshape(1, -1, c) + g * self.kernel_scale * kernels
                bias = self.head.bias.reshape(1, -1, 1) + g * self.kernel_bias
                logits = (wgt @ feats.reshape(n, c, h * w) + bias).reshape(n, -1, h, w)
            else:
                dyn = self.localise(feats, kernels)
                g = g.unsqueeze(-1)
                logits = self.head(feats)
                logits = logits + g * dyn if self.cfg.residual else logits * (1 - g) + g * dyn
        heat = torch.sigmoid(logits)
        return heat, self.kernels(feats, heat), feats

    def forward_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """(N, L, 3, H, W) consecutive crops -> (N, L, J, h, w) heatmaps; frame 0 is the keyframe."""
        out, k = [], None
        for t in range(clip.shape[1]):
            heat, k, _ = self.step(clip[:, t], k)
            out.append(heat)
        return torch.stack(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame (keyframe) heatmaps: the plain student."""
        return torch.sigmoid(self.head(self.encoder(x)))


class DKDStep(nn.Module):
    """Export wrapper: ``(image, kernels, gate) -> (heatmaps, kernels_out)``, gate shape (1,)."""

    def __init__(self, model: DKDPose):
        super().__init__()
        self.model = model

    def forward(self, image, kernels, gate):
        heat, nxt, _ = self.model.step(image, kernels, gate)
        return heat, nxt


class PerFrame(nn.Module):
    """Export wrapper of the plain per-frame student (encoder + 1x1 head), for the student card."""

    def __init__(self, model: DKDPose):
        super().__init__()
        self.model, self.cfg = model, model.cfg

    @property
    def input_size(self):
        return self.model.input_size

    def forward(self, x):
        return self.model(x)


def dkd_metadata(model: DKDPose, *, keyframe_interval: int = 0, extra: dict | None = None,
                 names: tuple[str, str, str, str] = ("heatmaps", "kernels_out", "kernels", "gate")) -> dict[str, str]:
    """The ``edgepose.*`` metadata of the DKD runtime card (:mod:`edgepose.models.dkd`).

    ``names``: the file's tensor names of (heatmaps, next kernels, kernels, gate).
    """
    from edgepose.version import __version__

    meta = {"edgepose.card": "dkd", "edgepose.keypoint_format": "coco17", "edgepose.input_layout": "NCHW",
            "edgepose.mean": json.dumps([MEAN] * 3), "edgepose.std": json.dumps([STD] * 3),
            "edgepose.outputs": json.dumps({"heatmaps": names[0], "state": names[1]}),
            "edgepose.state_inputs": json.dumps({"state": names[2], "gate": names[3]}),
            "edgepose.keyframe_interval": str(int(keyframe_interval)),
            "edgepose.architecture": json.dumps({"DKDPose": model.cfg.to_dict()}),
            "edgepose.version": __version__}
    meta.update({k if k.startswith("edgepose.") else f"edgepose.{k}": str(v) for k, v in (extra or {}).items()})
    return meta


def export_dkd(model: DKDPose, path: str | os.PathLike, *, keyframe_interval: int = 0, opset: int = 18,
               parity_tol: float = 1e-4, extra_metadata: dict | None = None) -> dict:
    """Export the DKD step graph with ``edgepose.card = dkd`` metadata and check a 3-frame rollout.

    Args:
        model: a trained :class:`DKDPose`.
        path: the ``.onnx`` file.
        keyframe_interval: frames between forced keyframes the runtime applies (0 = only the first
            frame and after a lost track).
        opset: ONNX opset.
        parity_tol: largest allowed heatmap difference torch vs ONNX Runtime over the rollout.
        extra_metadata: more ``edgepose.*`` keys.

    Returns:
        ``{"path", "max_abs_diff", "metadata"}``.

    Raises:
        RuntimeError: the checker fails or the rollout differs by more than ``parity_tol``.
    """
    import onnx

    from ..export.onnx_export import cpu_session, save_checked

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    step = DKDStep(model).eval()
    s, j, kd = model.cfg.input_size, model.cfg.num_keypoints, model.cfg.kernel_dim
    ex = (torch.zeros(1, 3, s, s), torch.zeros(1, j, kd), torch.ones(1))
    with tempfile.TemporaryDirectory(prefix="edgepose-export-") as tmp:
        tmp_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(step, ex, tmp_path, dynamo=True, opset_version=opset,
                          input_names=["image", "kernels", "gate"], output_names=["heatmaps", "kernels_out"])
        proto = onnx.load(tmp_path)
    meta = dkd_metadata(model, keyframe_interval=keyframe_interval, extra=extra_metadata)
    save_checked(proto, meta, path, what="DKD ONNX")
    sess = cpu_session(path)
    diff = _rollout_diff(step, s, j, kd, lambda x, k, g: sess.run(None, {"image": x, "kernels": k, "gate": g}))
    if diff > parity_tol:
        raise CompressionError(f"DKD ONNX rollout differs from torch by {diff:.2e} (> parity_tol={parity_tol}); "
                           f"the file is at {str(path)!r} for inspection")
    log.info("exported %s (rollout parity %.1e)", path, diff)
    return {"path": os.fspath(path), "max_abs_diff": diff, "metadata": meta}


def _rollout_diff(step, s: int, j: int, kd: int, run) -> float:
    """Largest heatmap difference between torch and ``run(x, kernels, gate) -> (heat, kernels)``
    over a seeded 3-frame rollout (a keyframe, then two tracked frames feeding back the kernels)."""
    rng = np.random.default_rng(0)
    k_t, k_r = torch.zeros(1, j, kd), np.zeros((1, j, kd), np.float32)
    diff = 0.0
    for t in range(3):
        x = rng.uniform(-1, 1, size=(1, 3, s, s)).astype(np.float32)
        g = np.array([0.0 if t == 0 else 1.0], np.float32)
        with torch.no_grad():
            h_t, k_t = step(torch.from_numpy(x), k_t, torch.from_numpy(g))
        h_r, k_r = run(x, k_r, g)
        diff = max(diff, float(np.abs(h_r - h_t.numpy()).max()))
    return diff


def export_dkd_tflite(model: DKDPose, path: str | os.PathLike, *, keyframe_interval: int = 0,
                      parity_tol: float = 1e-4, extra_metadata: dict | None = None) -> dict:
    """fp32 TFLite of the DKD step graph via litert-torch, rollout-checked in LiteRT, with metadata.

    Raises:
        edgepose.errors.MissingDependencyError: litert-torch / ai-edge-litert missing.
        RuntimeError: the 3-frame rollout differs by more than ``parity_tol``.
    """
    from edgepose._optional import require

    from .vit import append_tflite_metadata, tflite_input_names, tflite_interpreter, tflite_output_names

    litert_torch = require("litert_torch", "compress", package="litert-torch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = DKDStep(model.eval()).eval()
    s, j, kd = model.cfg.input_size, model.cfg.num_keypoints, model.cfg.kernel_dim
    litert_torch.convert(step, (torch.zeros(1, 3, s, s), torch.zeros(1, j, kd), torch.ones(1))).export(os.fspath(path))
    it = tflite_interpreter(path)
    ins, outs = tflite_input_names(it), tflite_output_names(it)
    idx_in = {d["name"]: d["index"] for d in it.get_input_details()}
    idx_out = {d["name"]: d["index"] for d in it.get_output_details()}
    def run_litert(x, k, g):
        for name, v in zip(ins, (x, k, g)):
            it.set_tensor(idx_in[name], v)
        it.invoke()
        return tuple(it.get_tensor(idx_out[n]).copy() for n in outs)

    diff = _rollout_diff(step, s, j, kd, run_litert)
    if diff > parity_tol:
        raise CompressionError(f"DKD TFLite rollout differs from torch by {diff:.2e} (> parity_tol={parity_tol}); "
                           f"the file is at {str(path)!r} for inspection")
    meta = dkd_metadata(model, keyframe_interval=keyframe_interval, extra=extra_metadata,
                        names=(outs[0], outs[1], ins[1], ins[2]))
    append_tflite_metadata(path, meta)
    log.info("exported %s (LiteRT rollout parity %.1e)", path, diff)
    return {"path": os.fspath(path), "max_abs_diff": diff, "metadata": meta}
