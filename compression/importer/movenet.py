"""MoveNet SinglePose as a trainable torch module, plus its decoder in numpy and in torch.

:func:`import_movenet` reads the official fp32 ONNX (converted from tfjs) and returns a
:class:`MoveNetTorch` whose ``forward`` gives the four raw head maps (NCHW):

* ``heatmap`` (N, 17, h, w), after the sigmoid;
* ``center`` (N, 1, h, w), after the sigmoid;
* ``regress`` (N, 34, h, w), per-keypoint (dy, dx) from the person centre, in map cells;
* ``offset`` (N, 34, h, w), per-keypoint sub-cell (dy, dx).

:func:`decode_heads` reproduces the graph's post-processing (centre argmax weighted by a fixed
prior, regression to a first guess, heatmap argmax weighted by the inverse distance to it, offset
refinement) and returns MoveNet's ``[17, 3]`` (y, x, score) normalised to the crop, the format of
:func:`edgepose.models.movenet.decode_movenet`. :class:`MoveNetDeploy` wraps the body with the
input cast / normalisation and the same decoder in torch, for export as a drop-in MoveNet file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ._graph import OnnxBody, build_body
from edgepose.errors import ConfigError, MissingFileError
from edgepose._hash import sha256_file as _sha256

log = logging.getLogger(__name__)

#: Head names in the order MoveNetTorch returns them, with the tfjs scope that identifies each.
HEADS = ("heatmap", "center", "regress", "offset")
_SCOPES = {"heatmap": "kpt_heatmap", "center": "center_", "regress": "kpt_regress", "offset": "kpt_offset"}
#: COCO-17 left/right pairs (for horizontal flips).
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


@dataclass(frozen=True)
class ImportConfig:
    """How to import an ONNX pose model.

    Attributes:
        restore_bn: put an identity-initialised BatchNorm2d back after every convolution (the
            converter folded BN into the conv). Default False: the folded model prunes and
            fine-tunes with small CPU batches more stably; turn on for long training runs.
    """

    restore_bn: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DecodeConstants:
    """Fixed tensors of MoveNet's post-processing, read from the ONNX graph.

    Attributes:
        center_weight: (h, w) prior multiplied into the centre map before its argmax.
        dist_offset: added to the keypoint-to-regression distance before dividing the heatmap.
        out_scale: (2,) map cells -> normalised crop coordinates for (y, x) (about 1 / h).
    """

    center_weight: np.ndarray
    dist_offset: float
    out_scale: np.ndarray


class MoveNetTorch(nn.Module):
    """The imported MoveNet network up to its raw head outputs.

    Attributes:
        body: the :class:`OnnxBody` (convolutions are ``body.layers[...]`` ``nn.Conv2d``).
        input_size: (w, h) of the model input.
        scale, shift: per-channel input normalisation, ``x = rgb * scale + shift``.
        decode: the :class:`DecodeConstants`.
        source_sha256: checksum of the ONNX file it came from.
    """

    def __init__(self, body: OnnxBody, *, input_size, scale, shift, decode: DecodeConstants,
                 source_sha256: str = "", name: str = "movenet"):
        super().__init__()
        self.body = body
        self.input_size = tuple(int(v) for v in input_size)
        self.register_buffer("scale", torch.tensor(np.asarray(scale, np.float32)).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor(np.asarray(shift, np.float32)).view(1, 3, 1, 1))
        self.decode = decode
        self.source_sha256 = source_sha256
        self.name = name

    def normalise(self, rgb_nhwc: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) RGB 0-255 (any dtype) -> normalised NCHW float input."""
        x = rgb_nhwc.to(torch.float32).permute(0, 3, 1, 2)
        return x * self.scale + self.shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Normalised NCHW input -> (heatmap, center, regress, offset)."""
        return self.body(x)

    def heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Like ``forward`` but as a dict keyed by :data:`HEADS`."""
        return dict(zip(HEADS, self.forward(x)))

    def head_convs(self) -> list[nn.Module]:
        """The final convolution of each head (keep them out of pruning)."""
        out = []
        producers = {s.output: s for s in self.body.steps}
        for t in self.body.head_tensors:
            s = producers[t]
            while s.op != "Conv":
                s = producers[s.inputs[0]]
            out.append(self.body.layers[s.module])
        return out


def _decode_constants(info) -> DecodeConstants:
    consts, graph = info["consts"], info["graph"]
    cw = ds = osc = None
    producers = info["producers"]
    for node in graph.node:
        cin = [consts[i] for i in node.input if i in consts]
        if node.op_type == "Mul" and cin and cin[0].ndim == 3 and cin[0].shape[-1] == 1:
            cw = cin[0][..., 0].astype(np.float32)
        elif node.op_type == "Mul" and cin and cin[0].shape == (1, 1, 1, 2):
            osc = cin[0].reshape(2).astype(np.float32)
        elif node.op_type == "Add" and cin and any(
                getattr(producers.get(i), "op_type", "") == "Sqrt" for i in node.input):
            ds = float(cin[0])
    if cw is None or ds is None or osc is None:
        raise ConfigError("this ONNX file does not have MoveNet SinglePose's post-processing "
                         "(centre prior Mul, Sqrt distance, output scale); import it with "
                         "compression.importer.build_body and write its decoder")
    return DecodeConstants(cw, ds, osc)


def import_movenet(path: str | os.PathLike, cfg: ImportConfig = ImportConfig()) -> MoveNetTorch:
    """Import a MoveNet SinglePose ONNX file (Lightning or Thunder) as a :class:`MoveNetTorch`.

    Args:
        path: the ``.onnx`` file (int32 NHWC input, ``[1, 1, 17, 3]`` output).
        cfg: import options.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the graph is not a MoveNet SinglePose graph the importer understands.
    """
    import onnx

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"teacher/model file not found: {path!r}; pass the path of a MoveNet "
                                "SinglePose .onnx (e.g. $EDGEPOSE_ASSETS/models/movenet/"
                                "movenet_lightning_fp32.onnx)")
    model = onnx.load(path)
    body, info = build_body(model, restore_bn=cfg.restore_bn)
    by_head = {}
    producers = {s.output: s for s in body.steps}
    for t in body.head_tensors:
        s = producers[t]
        while s.op != "Conv":
            s = producers[s.inputs[0]]
        conv_out = s.output
        for head, scope in _SCOPES.items():
            if scope in conv_out:
                by_head[head] = t
    if sorted(by_head) != sorted(HEADS):
        raise ConfigError(f"{path!r}: expected MoveNet heads {HEADS}, found head tensors "
                         f"{body.head_tensors}; this is not a MoveNet SinglePose graph")
    body.head_tensors = [by_head[h] for h in HEADS]
    body.head_names = list(HEADS)
    size = info["input_size"]
    name = os.path.splitext(os.path.basename(path))[0]
    net = MoveNetTorch(body, input_size=size, scale=info["scale"], shift=info["shift"],
                       decode=_decode_constants(info), source_sha256=_sha256(path), name=name)
    net.eval()
    return net


# -- decoding -------------------------------------------------------------------------------------
def decode_heads(heatmap: np.ndarray, center: np.ndarray, regress: np.ndarray, offset: np.ndarray,
                 consts: DecodeConstants) -> np.ndarray:
    """MoveNet's post-processing in numpy, for one image.

    Args:
        heatmap: (17, h, w) keypoint heatmaps (after sigmoid).
        center: (1, h, w) or (h, w) person-centre map (after sigmoid).
        regress: (34, h, w) centre -> keypoint regression, (dy, dx) per keypoint, in cells.
        offset: (34, h, w) sub-cell offsets, (dy, dx) per keypoint.
        consts: from the imported model (``model.decode``).

    Returns:
        (17, 3) float32 (y, x, score), y and x normalised to the crop: the rows of MoveNet's
        ``[1, 1, 17, 3]`` output (decode to frame pixels with ``decode_movenet``).
    """
    heat = np.asarray(heatmap, np.float32)
    k, h, w = heat.shape
    ctr = np.asarray(center, np.float32).reshape(h, w) * consts.center_weight
    ci = int(np.argmax(ctr))
    cy, cx = ci // w, ci - (ci // w) * w
    reg = np.asarray(regress, np.float32)[:, cy, cx].reshape(k, 2)
    ry, rx = cy + reg[:, 0], cx + reg[:, 1]
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    xx = np.arange(w, dtype=np.float32)[None, :, None]
    dist = np.sqrt((yy - ry) ** 2 + (xx - rx) ** 2) + np.float32(consts.dist_offset)
    weighted = np.transpose(heat, (1, 2, 0)) / dist  # (h, w, k)
    idx = np.argmax(weighted.reshape(h * w, k), axis=0)
    ky, kx = idx // w, idx - (idx // w) * w
    ks = np.arange(k)
    score = heat[ks, ky, kx]
    off = np.asarray(offset, np.float32).reshape(k, 2, h, w)[ks, :, ky, kx]  # (k, 2)
    y = (ky + off[:, 0]) * consts.out_scale[0]
    x = (kx + off[:, 1]) * consts.out_scale[1]
    return np.stack([y, x, score], axis=1).astype(np.float32)


def decode_heads_torch(heatmap, center, regress, offset, center_weight, dist_offset: float,
                       out_scale) -> torch.Tensor:
    """:func:`decode_heads` in torch for a batch: returns (N, 17, 3). Used inside exported graphs."""
    n, k, h, w = heatmap.shape
    ctr = center.reshape(n, h * w) * center_weight.reshape(1, h * w)
    ci = torch.argmax(ctr, dim=1)  # (n,)
    cy = torch.div(ci, w, rounding_mode="floor")
    cx = ci - cy * w
    reg = torch.gather(regress.reshape(n, 2 * k, h * w), 2, ci.view(n, 1, 1).expand(n, 2 * k, 1))
    reg = reg.reshape(n, k, 2)
    ry = cy.view(n, 1).to(heatmap.dtype) + reg[..., 0]
    rx = cx.view(n, 1).to(heatmap.dtype) + reg[..., 1]
    yy = torch.arange(h, dtype=heatmap.dtype).view(1, 1, h, 1)
    xx = torch.arange(w, dtype=heatmap.dtype).view(1, 1, 1, w)
    dist = torch.sqrt((yy - ry.view(n, k, 1, 1)) ** 2 + (xx - rx.view(n, k, 1, 1)) ** 2) + dist_offset
    idx = torch.argmax((heatmap / dist).reshape(n, k, h * w), dim=2)  # (n, k)
    ky = torch.div(idx, w, rounding_mode="floor")
    kx = idx - ky * w
    score = torch.gather(heatmap.reshape(n, k, h * w), 2, idx.unsqueeze(2)).squeeze(2)
    off = torch.gather(offset.reshape(n, k, 2, h * w), 3, idx.view(n, k, 1, 1).expand(n, k, 2, 1))
    off = off.squeeze(3)
    y = (ky.to(heatmap.dtype) + off[..., 0]) * out_scale[0]
    x = (kx.to(heatmap.dtype) + off[..., 1]) * out_scale[1]
    return torch.stack([y, x, score], dim=2)


class MoveNetDeploy(nn.Module):
    """Input cast + normalisation + body + decoder: a drop-in MoveNet ``[1, H, W, 3] -> [1, 1, 17, 3]``.

    Exported to ONNX it reads like the official file (int32 RGB in, (y, x, score) out), so the
    runtime's MoveNet card runs it unchanged.
    """

    def __init__(self, net: MoveNetTorch):
        super().__init__()
        self.net = net
        d = net.decode
        self.register_buffer("center_weight", torch.tensor(d.center_weight))
        self.register_buffer("out_scale", torch.tensor(d.out_scale))
        self.dist_offset = float(d.dist_offset)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        heat, ctr, reg, off = self.net(self.net.normalise(rgb))
        kps = decode_heads_torch(heat, ctr, reg, off, self.center_weight, self.dist_offset, self.out_scale)
        return kps.unsqueeze(1)
