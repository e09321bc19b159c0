"""A tiny ViT pose model: patch embedding, a few transformer blocks, a light Resize + Conv heatmap head.

The token grid may be non-square (a 128 x 96 input with 8-px patches is a 16 x 12 grid). The
model returns sigmoid heatmaps at stride ``patch / upsample`` (4 by default, MoveNet's stride, so
the teacher's cached maps supervise it directly) and, on request, every block's token output
(what :mod:`edgepose.compression.distill.vitkd` distils).

Ops used at inference: Conv, MatMul / Gemm, Softmax, LayerNormalization, HardSwish, Add, Resize,
Sigmoid - all run by ONNX Runtime and LiteRT. Upsampling is Resize + Conv, never ConvTranspose
(docs/design.md pitfall: LiteRT int8 rejects transposed convolutions).

:func:`export_heatmap_student` writes any such heatmap model as an ``edgepose.card = student``
ONNX file (head ``heatmap``, NCHW float input, mean / std in 0-255 units) and checks parity;
:func:`export_heatmap_student_tflite` does the same for LiteRT through litert-torch (metadata in
an ``edgepose.json`` zip appended to the flatbuffer, as the LiteRT backend reads it).
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
from torch import nn
from edgepose.errors import CompressionError, ConfigError

log = logging.getLogger(__name__)

#: Input normalisation of every model here, 0-255 units: ``x = (rgb - MEAN) / STD`` (maps to [-1, 1]).
MEAN, STD = 127.5, 127.5


@dataclass(frozen=True)
class ViTPoseConfig:
    """Shape of a :class:`ViTPose`.

    Attributes:
        input_size: (height, width) in pixels; both multiples of ``patch`` (128 x 128: a 16 x 16
            grid, cheap on a 2-core CPU; 128 x 96 gives a non-square 16 x 12 grid).
        patch: patch side, a power of 2 (8: stride-8 tokens, upsampled 2x to MoveNet's stride-4
            maps).
        stem: ``"conv"`` (default): log2(patch) stride-2 3x3 convolutions embed the patches (an
            early-convolution stem: a tiny ViT trained for minutes on ~1k crops learns much faster
            with it); ``"patch"``: the classic single patch x patch linear embedding.
        dim: token width (64 for a student, 128+ for a teacher).
        depth: transformer blocks (ViTKD needs >= 3: two mimicked, one generated).
        heads: attention heads (dim must divide by it).
        mlp_ratio: hidden width of each block's MLP as a multiple of ``dim``.
        head_channels: channels of the heatmap head's 3x3 conv.
        upsample: Resize factor in the head (heatmap stride = patch / upsample).
        num_keypoints: heatmaps out (17: COCO).
    """

    input_size: tuple[int, int] = (128, 128)
    patch: int = 8
    stem: str = "conv"
    dim: int = 64
    depth: int = 4
    heads: int = 2
    mlp_ratio: float = 2.0
    head_channels: int = 64
    upsample: int = 2
    num_keypoints: int = 17

    def __post_init__(self):
        h, w = self.input_size
        if h % self.patch or w % self.patch:
            raise ConfigError(f"ViTPoseConfig.input_size {self.input_size!r} must be multiples of patch={self.patch}")
        if self.dim % self.heads:
            raise ConfigError(f"ViTPoseConfig.dim {self.dim} must be divisible by heads={self.heads}")
        if self.patch & (self.patch - 1):
            raise ConfigError(f"ViTPoseConfig.patch must be a power of 2, got {self.patch!r}")
        if self.stem not in ("conv", "patch"):
            raise ConfigError(f"ViTPoseConfig.stem must be 'conv' or 'patch', got {self.stem!r}")
        if self.depth < 1:
            raise ConfigError(f"ViTPoseConfig.depth must be >= 1, got {self.depth!r}")
        if self.patch % self.upsample:
            raise ConfigError(f"ViTPoseConfig.upsample {self.upsample} must divide patch={self.patch}")

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols)."""
        return self.input_size[0] // self.patch, self.input_size[1] // self.patch

    @property
    def stride(self) -> int:
        """Input pixels per heatmap cell."""
        return self.patch // self.upsample

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    """Multi-head self-attention written with MatMul + Softmax (exports to plain ONNX ops)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Hardswish(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTPose(nn.Module):
    """Tiny ViT with a heatmap head. ``forward(x)`` -> sigmoid heatmaps (N, K, H/stride, W/stride).

    Args:
        cfg: the shape.
    """

    def __init__(self, cfg: ViTPoseConfig = ViTPoseConfig()):
        super().__init__()
        self.cfg = cfg
        gh, gw = cfg.grid
        self.patch_embed = _conv_stem(cfg.dim, cfg.patch) if cfg.stem == "conv" else \
            nn.Conv2d(3, cfg.dim, cfg.patch, stride=cfg.patch)
        self.pos = nn.Parameter(torch.zeros(1, gh * gw, cfg.dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=cfg.upsample, mode="bilinear", align_corners=False),
            nn.Conv2d(cfg.dim, cfg.head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(cfg.head_channels), nn.ReLU(inplace=True),
            nn.Conv2d(cfg.head_channels, cfg.num_keypoints, 1))
        nn.init.constant_(self.head[-1].bias, -4.0)  # start near MoveNet's empty-map value (~0.02)
        self.apply(_init)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height), the convention of the runtime cards."""
        return self.cfg.input_size[1], self.cfg.input_size[0]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch-embedded tokens with position embedding, (N, gh * gw, dim)."""
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos

    def to_map(self, t: torch.Tensor) -> torch.Tensor:
        """Tokens (N, gh * gw, C) -> feature map (N, C, gh, gw)."""
        gh, gw = self.cfg.grid
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], gh, gw)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Heatmaps and the list of every block's output tokens (before the final norm)."""
        t = self.tokens(x)
        feats = []
        for blk in self.blocks:
            t = blk(t)
            feats.append(t)
        return torch.sigmoid(self.head(self.to_map(self.norm(t)))), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


def _conv_stem(dim: int, patch: int) -> nn.Sequential:
    """log2(patch) stride-2 3x3 convs, widths doubling up to ``dim`` (last conv linear)."""
    n = patch.bit_length() - 1
    widths = [max(8, dim >> (n - 1 - i)) for i in range(n)]
    layers, cin = [], 3
    for i, w in enumerate(widths):
        w = dim if i == n - 1 else w
        layers.append(nn.Conv2d(cin, w, 3, 2, 1, bias=i == n - 1))
        if i < n - 1:
            layers += [nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        cin = w
    return nn.Sequential(*layers)


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 / float RGB NCHW in 0-255 -> the model input ``(rgb - MEAN) / STD``."""
    return (rgb.float() - MEAN) / STD


# -- export ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ViTExportConfig:
    """Options of :func:`export_heatmap_student`.

    Attributes:
        opset: ONNX opset (18: torch 2.13's dynamo exporter's native opset).
        parity_tol: largest allowed absolute heatmap difference torch vs ONNX Runtime (sigmoid
            outputs in [0, 1]; fp32 reordering stays far below 1e-4).
        check_inputs: random inputs in the parity check.
    """

    opset: int = 18
    parity_tol: float = 1e-4
    check_inputs: int = 2

    def __post_init__(self):
        if self.parity_tol <= 0:
            raise ConfigError(f"ViTExportConfig.parity_tol must be > 0, got {self.parity_tol!r}")


def student_metadata(model: nn.Module, *, extra: dict | None = None) -> dict[str, str]:
    """The ``edgepose.*`` metadata the runtime student card reads (heatmap head, NCHW)."""
    from edgepose.version import __version__

    meta = {"edgepose.card": "student", "edgepose.head": "heatmap", "edgepose.keypoint_format": "coco17",
            "edgepose.input_layout": "NCHW", "edgepose.mean": json.dumps([MEAN] * 3),
            "edgepose.std": json.dumps([STD] * 3), "edgepose.outputs": json.dumps({"heatmaps": "heatmaps"}),
            "edgepose.version": __version__}
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        meta["edgepose.architecture"] = json.dumps({type(model).__name__: cfg.to_dict()})
    meta.update({k if k.startswith("edgepose.") else f"edgepose.{k}": str(v) for k, v in (extra or {}).items()})
    return meta


def export_heatmap_student(model: nn.Module, path: str | os.PathLike,
                           cfg: ViTExportConfig = ViTExportConfig(), *,
                           extra_metadata: dict | None = None) -> dict:
    """Export a heatmap model (input ``(1, 3, H, W)`` normalised, output heatmaps) for the student card.

    Args:
        model: a module with ``input_size`` (w, h) returning (1, K, h, w) heatmaps.
        path: the ``.onnx`` file.
        cfg: export options.
        extra_metadata: more ``edgepose.*`` keys (e.g. the training recipe).

    Returns:
        ``{"path", "max_abs_diff", "metadata"}``.

    Raises:
        RuntimeError: the checker fails or parity is worse than ``cfg.parity_tol``.
    """
    import onnx

    from ..export.onnx_export import cpu_session, save_checked

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    w, h = model.input_size
    with tempfile.TemporaryDirectory(prefix="edgepose-export-") as tmp:
        tmp_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, (torch.zeros(1, 3, h, w),), tmp_path, dynamo=True, opset_version=cfg.opset,
                          input_names=["image"], output_names=["heatmaps"], verbose=False)
        proto = onnx.load(tmp_path)
    meta = student_metadata(model, extra=extra_metadata)
    save_checked(proto, meta, path)
    sess = cpu_session(path)
    rng = np.random.default_rng(0)
    diff = 0.0
    for _ in range(cfg.check_inputs):
        x = rng.uniform(-1, 1, size=(1, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        diff = max(diff, float(np.abs(sess.run(None, {"image": x})[0] - ref).max()))
    if diff > cfg.parity_tol:
        raise CompressionError(f"ONNX export differs from torch by {diff:.2e} (> parity_tol={cfg.parity_tol}); "
                           f"the file is at {str(path)!r} for inspection")
    log.info("exported %s (parity %.1e)", path, diff)
    return {"path": os.fspath(path), "max_abs_diff": diff, "metadata": meta}


def tflite_interpreter(path: str | os.PathLike):
    """A LiteRT interpreter on ``path`` (1 thread), tensors allocated."""
    from edgepose._optional import require

    interpreter = require("ai_edge_litert.interpreter", "tflite", package="ai-edge-litert")
    it = interpreter.Interpreter(model_path=os.fspath(path), num_threads=1)
    it.allocate_tensors()
    return it


def tflite_output_names(it) -> list[str]:
    """Output tensor names in signature order (``output_0``, ``output_1``, ...)."""
    outs = next(iter(it._get_full_signature_list().values()))["outputs"]
    by_index = {d["index"]: d["name"] for d in it.get_output_details()}
    return [by_index[outs[k]] for k in sorted(outs, key=lambda k: int(k.rsplit("_", 1)[-1]))]


def tflite_input_names(it) -> list[str]:
    """Input tensor names in the order of the converted module's arguments."""
    ins = next(iter(it._get_full_signature_list().values()))["inputs"]
    by_index = {d["index"]: d["name"] for d in it.get_input_details()}
    return [by_index[ins[k]] for k in sorted(ins, key=lambda k: int(k.rsplit("_", 1)[-1]))]


def append_tflite_metadata(path: str | os.PathLike, meta: dict[str, str]) -> None:
    """Append ``edgepose.json`` (a zip after the flatbuffer; LiteRT ignores it)."""
    import zipfile

    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("edgepose.json", json.dumps(meta))


def export_heatmap_student_tflite(model: nn.Module, path: str | os.PathLike,
                                  cfg: ViTExportConfig = ViTExportConfig(), *,
                                  extra_metadata: dict | None = None) -> dict:
    """fp32 TFLite of a heatmap model via litert-torch, checked in LiteRT, with student-card metadata.

    Returns:
        ``{"path", "max_abs_diff", "metadata"}``.

    Raises:
        edgepose.errors.MissingDependencyError: litert-torch / ai-edge-litert missing.
        RuntimeError: parity is worse than ``cfg.parity_tol``.
    """
    from edgepose._optional import require

    litert_torch = require("litert_torch", "compress", package="litert-torch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    w, h = model.input_size
    litert_torch.convert(model, (torch.zeros(1, 3, h, w),)).export(os.fspath(path))
    it = tflite_interpreter(path)
    name = tflite_output_names(it)[0]
    out_idx = {d["name"]: d["index"] for d in it.get_output_details()}[name]
    rng = np.random.default_rng(0)
    diff = 0.0
    for _ in range(cfg.check_inputs):
        x = rng.uniform(-1, 1, size=(1, 3, h, w)).astype(np.float32)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        with torch.no_grad():
            diff = max(diff, float(np.abs(it.get_tensor(out_idx) - model(torch.from_numpy(x)).numpy()).max()))
    if diff > cfg.parity_tol:
        raise CompressionError(f"TFLite export differs from torch by {diff:.2e} (> parity_tol={cfg.parity_tol}); "
                           f"the file is at {str(path)!r} for inspection")
    meta = student_metadata(model, extra=extra_metadata)
    meta["edgepose.outputs"] = json.dumps({"heatmaps": name})
    append_tflite_metadata(path, meta)
    log.info("exported %s (LiteRT parity %.1e)", path, diff)
    return {"path": os.fspath(path), "max_abs_diff": diff, "metadata": meta}
