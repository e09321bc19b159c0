"""Per-layer MACs and bytes of a model file, for the roofline emulator and the bench report.

* ``.onnx``: shapes from ``onnx.shape_inference``; MACs for Conv / ConvTranspose / QLinearConv /
  ConvInteger / MatMul / Gemm / MatMulInteger / QLinearMatMul; every other node counts 0 MACs
  and its tensor bytes (memory-bound).
* ``.tflite``: parsed through the LiteRT interpreter's op and tensor details (no TensorFlow
  needed): CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, BATCH_MATMUL carry MACs.
  XNNPACK ``DELEGATE`` nodes are skipped (the ops they replaced are listed too).

Bytes of a layer = bytes of its input tensors (activations and weights) + its outputs, at
their stored dtype. That is the DRAM traffic if nothing stays in cache: an upper bound that is
applied the same way on the host and on the target, so the ratio the emulator uses is fair.
A layer's precision is ``int8`` when its first input is 8-bit, else ``fp32`` (fp16 weights are
dequantised to fp32 on CPU by LiteRT, so they count as fp32 compute).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from edgepose._optional import require
from edgepose.errors import ModelLoadError

log = logging.getLogger(__name__)

_ONNX_DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_ONNX_8BIT = {2, 3}  # UINT8, INT8
_MAC_OPS_ONNX = {"Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "MatMul", "Gemm",
                 "MatMulInteger", "QLinearMatMul"}
_MAC_OPS_TFLITE = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"}


@dataclass
class LayerStat:
    """One graph node.

    Attributes:
        name: node name (ONNX) or ``OP#index`` (TFLite).
        op: operator type.
        macs: multiply-accumulates (0 for non-MAC ops).
        bytes: input + weight + output tensor bytes.
        precision: ``fp32`` or ``int8`` (the arithmetic the runtime will use).
    """

    name: str
    op: str
    macs: int
    bytes: int
    precision: str

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOP/byte (2 FLOPs per MAC)."""
        return 2.0 * self.macs / self.bytes if self.bytes else 0.0


@dataclass
class ModelStats:
    """Per-layer statistics of one model file."""

    path: str
    format: str
    layers: list[LayerStat] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return int(sum(lay.macs for lay in self.layers))

    @property
    def bytes(self) -> int:
        return int(sum(lay.bytes for lay in self.layers))

    @property
    def precision(self) -> str:
        """``int8`` when most MACs are int8, else ``fp32``."""
        int8 = sum(lay.macs for lay in self.layers if lay.precision == "int8")
        return "int8" if int8 * 2 > self.macs else "fp32"

    def summary(self) -> dict:
        return {"macs": self.macs, "gmacs": round(self.macs / 1e9, 4), "bytes": self.bytes,
                "layers": len(self.layers), "mac_layers": sum(1 for x in self.layers if x.macs),
                "precision": self.precision}

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.format, **self.summary(),
                "per_layer": [asdict(x) for x in self.layers]}


def model_stats(path: str | os.PathLike) -> ModelStats:
    """Per-layer MACs and bytes of an ``.onnx`` or ``.tflite`` file."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ModelLoadError(f"model file not found: {p!r}")
    ext = os.path.splitext(p)[1].lower()
    if ext == ".onnx":
        return onnx_stats(p)
    if ext == ".tflite":
        return tflite_stats(p)
    raise ModelLoadError(f"cannot compute MACs of {p!r}: extension {ext!r} is not .onnx or .tflite")


# -- ONNX -------------------------------------------------------------------------------------
def onnx_stats(path: str) -> ModelStats:
    onnx = require("onnx", "bench")
    model = onnx.load(path)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # shape inference is best effort on exotic graphs
        log.warning("onnx shape inference failed on %s (%s); unknown shapes count 0", path, exc)
    g = model.graph
    info: dict[str, tuple[list[int], int]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tt.shape.dim]
        info[vi.name] = (dims, tt.elem_type)
    for init in g.initializer:
        info[init.name] = (list(init.dims), init.data_type)

    def elems(name):
        dims = info.get(name, ([], 1))[0]
        return int(np.prod(dims)) if dims and all(d > 0 for d in dims) else 0

    def nbytes(name):
        return elems(name) * _ONNX_DTYPE_BYTES.get(info.get(name, ([], 1))[1], 4)

    stats = ModelStats(path, "onnx")
    # QDQ graphs: a conv reading DequantizeLinear outputs runs as an int8 kernel once ORT fuses the
    # pattern at load (QLinearConv), though its tensors are float in the file
    dequantized = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    for i, node in enumerate(g.node):
        ins = [x for x in node.input if x]
        outs = [x for x in node.output if x]
        macs = _onnx_macs(node, ins, outs, info, elems)
        first = info.get(ins[0], ([], 1))[1] if ins else 1
        is8 = first in _ONNX_8BIT or (len(ins) > 1 and ins[0] in dequantized and ins[1] in dequantized)
        precision = "int8" if is8 and node.op_type in _MAC_OPS_ONNX else "fp32"
        stats.layers.append(LayerStat(node.name or f"{node.op_type}#{i}", node.op_type, int(macs),
                                      int(sum(nbytes(x) for x in ins + outs)), precision))
    return stats


def _onnx_macs(node, ins, outs, info, elems) -> int:
    op = node.op_type
    if op not in _MAC_OPS_ONNX or not outs:
        return 0
    out_e = elems(outs[0])
    if op in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
        w = ins[3] if op == "QLinearConv" else ins[1]
        wdims = info.get(w, ([], 1))[0]
        if len(wdims) < 3:
            return 0
        k = int(np.prod(wdims[2:]))
        if op == "ConvTranspose":  # weights [Cin, Cout/g, k...]: each input element fans out
            return elems(ins[0]) * wdims[1] * k
        return out_e * wdims[1] * k  # wdims[1] = Cin / group (grouped and depthwise alike)
    # MatMul family: out [..., M, N], reduction K = last dim of A
    a = ins[0]
    adims = info.get(a, ([], 1))[0]
    if not adims:
        return 0
    kdim = adims[-1]
    if op == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute) and len(adims) >= 2:
        kdim = adims[-2]
    return out_e * kdim


# -- TFLite -----------------------------------------------------------------------------------
def tflite_stats(path: str) -> ModelStats:
    from edgepose.backends.litert import load_interpreter_class

    cls, _ = load_interpreter_class()
    try:
        it = cls(model_path=path, experimental_preserve_all_tensors=False)
        ops = it._get_ops_details()  # public-enough: used by LiteRT's own model analyzer
        tensors = {t["index"]: t for t in it.get_tensor_details()}
    except Exception as exc:
        raise ModelLoadError(f"LiteRT could not read {path!r} for MAC counting: {exc}") from exc

    def shape(i):
        t = tensors.get(int(i))
        return [int(x) for x in t["shape"]] if t is not None else []

    def nbytes(i):
        t = tensors.get(int(i))
        if t is None:
            return 0
        return int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize if len(t["shape"]) else \
            np.dtype(t["dtype"]).itemsize

    stats = ModelStats(path, "tflite")
    for op in ops:
        name = op["op_name"]
        if name == "DELEGATE":
            continue
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        outs = [int(i) for i in op["outputs"] if int(i) >= 0]
        macs = 0
        if name in _MAC_OPS_TFLITE and outs and len(ins) >= 2:
            out_e = int(np.prod(shape(outs[0]))) if shape(outs[0]) else 0
            w = shape(ins[1])
            if name == "CONV_2D" and len(w) == 4:  # [Cout, kh, kw, Cin]
                macs = out_e * w[1] * w[2] * w[3]
            elif name == "DEPTHWISE_CONV_2D" and len(w) == 4:  # [1, kh, kw, Cout]
                macs = out_e * w[1] * w[2]
            elif name == "FULLY_CONNECTED" and len(w) == 2:  # [Cout, Cin]
                macs = out_e * w[1]
            elif name == "TRANSPOSE_CONV" and len(ins) >= 3:  # (out_shape, w [Cout,kh,kw,Cin], x)
                w, x = shape(ins[1]), shape(ins[2])
                if len(w) == 4 and x:
                    macs = int(np.prod(x)) * w[0] * w[1] * w[2]
            elif name == "BATCH_MATMUL":
                a = shape(ins[0])
                macs = out_e * (a[-1] if a else 0)
        first = tensors.get(ins[0]) if ins else None
        is8 = first is not None and np.dtype(first["dtype"]).itemsize == 1
        stats.layers.append(LayerStat(f"{name}#{op['index']}", name, int(macs),
                                      int(sum(nbytes(i) for i in ins + outs)),
                                      "int8" if is8 and macs else "fp32"))
    return stats
