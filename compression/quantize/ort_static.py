"""``quantize(onnx_in, onnx_out, cfg, calibration=...)``: ONNX Runtime static QDQ int8.

Weights per-channel int8, activations int8 (QDQ format, what ORT's CPU kernels fuse fastest here;
docs/design.md §6: dynamic int8 ran ~2x slower and per-tensor lost accuracy on pruned nets).

Calibration ranges are computed here, not inside ``quantize_static``, because ORT does not pass
the histogram settings through (its Entropy default of 128 bins / 128 quantised bins leaves one
candidate threshold, so it gave exactly the MinMax model). We run the calibrator with explicit
bins, write the ranges to ORT's calibration cache and quantise from it; :func:`calibration_ranges`
lets a test check that each method really changes the ranges.

Only the network is quantised: the decoder tail (ArgMax / Gather / distance maths after the heads)
stays float via ``nodes_to_exclude`` so keypoint coordinates keep full precision.

Input fold (``QuantizeConfig.fold_input``, on by default): MoveNet graphs normalise the int32 image
in float (Cast -> Sub / Mul per channel -> Sub 1 -> Transpose) before the first conv. Quantised as
is, ORT runs that as a float Sub + a broadcasting QLinearMul on 110 k elements: ~1.5 ms of a 5-6 ms
int8 run on this host, most of what the int8 convs save (docs/research-notes.md C2). The
normalisation ``a * x + b`` is affine with one scale, so the uint8 pixels *are* its quantised
tensor: :func:`fold_input_normalization` replaces the chain with Cast(uint8) -> Transpose ->
DequantizeLinear(a, zero point round(-b / a)). With MoveNet's a = 1/127.5, b = -1 that is bit for
bit the first-conv input the unfolded int8 graph computed (q = x), so the int8 model is unchanged,
only faster; calibration still runs on the unfolded graph so every other range is unchanged too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

#: Calibration methods accepted by QuantizeConfig.calibration.
CALIBRATIONS = ("minmax", "percentile", "entropy")
#: ONNX ops quantised (Conv + the ops between convs that ORT has QDQ kernels / fusions for).
DEFAULT_OPS = ("Conv", "Add", "Resize", "Concat", "Clip", "Relu", "Sigmoid", "Mul")


@dataclass(frozen=True)
class QuantizeConfig:
    """Static int8 quantisation options.

    Attributes:
        calibration: ``minmax``, ``percentile`` or ``entropy``.
        percentile: kept share of |activations| for percentile calibration (99.999: clips only
            rare outliers).
        num_bins: histogram bins for percentile / entropy (2048: enough resolution that the
            entropy search has candidates; ORT's default 128 degenerates to MinMax).
        num_quantized_bins: entropy's target bins (128 = int8 positive half).
        per_channel: per-output-channel weight scales (per-tensor lost accuracy on pruned nets).
        symmetric_activations: symmetric activation ranges (off: post-ReLU6 tensors are >= 0).
        activation_type: ``uint8`` (U8S8: the fast path of ORT's x86 / Arm kernels) or ``int8``.
        op_types: ONNX op types to quantise.
        exclude_decoder: keep the nodes after the head outputs in float.
        num_calibration: calibration crops used.
        exclude_nodes: ONNX node names kept in float besides the decoder (e.g. the most sensitive
            layers from :func:`~edgepose.compression.quantize.sensitivity.layer_sensitivity`).
        fold_input: fold the float input normalisation into a uint8 DequantizeLinear feeding the
            first conv (:func:`fold_input_normalization`); graphs without such a chain are left as is.
        quant_format: ``qdq`` (QuantizeLinear / DequantizeLinear pairs that ORT fuses into
            QLinearConv at load) or ``qoperator`` (QLinearConv written into the file).
        weight_type: ``int8`` (U8S8 with uint8 activations: the VNNI path on x86) or ``uint8`` (U8U8).
        reduce_range: 7-bit weights (for CPUs without VNNI, where u8 x s8 pairs can saturate).
        exclude_depthwise_below: keep depthwise convs with fewer channels than this in float (0: none).
            MLAS's int8 depthwise kernel is slow on channel counts that are not a multiple of its
            vector width (MoveNet's 24-channel head convs ran ~4x slower than fp32 NCHWc).
    """

    calibration: str = "minmax"
    percentile: float = 99.999
    num_bins: int = 2048
    num_quantized_bins: int = 128
    per_channel: bool = True
    symmetric_activations: bool = False
    activation_type: str = "uint8"
    op_types: tuple[str, ...] = DEFAULT_OPS
    exclude_decoder: bool = True
    num_calibration: int = 64
    exclude_nodes: tuple[str, ...] = ()
    fold_input: bool = True
    quant_format: str = "qdq"
    weight_type: str = "int8"
    reduce_range: bool = False
    exclude_depthwise_below: int = 0
    version: int = 2

    def __post_init__(self):
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"QuantizeConfig.calibration={self.calibration!r} is not one of "
                             f"{', '.join(CALIBRATIONS)}")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"QuantizeConfig.percentile must be in (50, 100], got {self.percentile!r}")
        if self.num_bins < self.num_quantized_bins:
            raise ConfigError(f"QuantizeConfig.num_bins ({self.num_bins}) must be >= num_quantized_bins "
                             f"({self.num_quantized_bins})")
        if self.activation_type not in ("uint8", "int8"):
            raise ConfigError(f"QuantizeConfig.activation_type={self.activation_type!r} is not one of "
                             "uint8, int8")
        if self.num_calibration < 1:
            raise ConfigError(f"QuantizeConfig.num_calibration must be >= 1, got {self.num_calibration!r}")
        if self.quant_format not in ("qdq", "qoperator"):
            raise ConfigError(f"QuantizeConfig.quant_format={self.quant_format!r} is not one of qdq, qoperator")
        if self.weight_type not in ("int8", "uint8"):
            raise ConfigError(f"QuantizeConfig.weight_type={self.weight_type!r} is not one of int8, uint8")
        if self.exclude_depthwise_below < 0:
            raise ConfigError("QuantizeConfig.exclude_depthwise_below must be >= 0, got "
                             f"{self.exclude_depthwise_below!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["op_types"] = list(self.op_types)
        d["exclude_nodes"] = list(self.exclude_nodes)
        return d


@dataclass
class QuantizeResult:
    """What :func:`quantize` wrote.

    Attributes:
        path: the int8 ``.onnx``.
        ranges: tensor name -> (low, high) activation range used.
        excluded: nodes kept in float.
        input_fold: what :func:`fold_input_normalization` did (``{"skipped": reason}`` when the graph
            had no foldable normalisation; empty when ``cfg.fold_input`` is off).
    """

    path: str
    ranges: dict = field(default_factory=dict)
    excluded: list = field(default_factory=list)
    input_fold: dict = field(default_factory=dict)


class _Reader:
    """ORT CalibrationDataReader over a list of uint8 crops (or of whole feed dicts: multi-input graphs)."""

    def __init__(self, name: str, crops, dtype):
        self.name, self.crops, self.dtype = name, list(crops), dtype
        self.i = 0

    def get_next(self):
        if self.i >= len(self.crops):
            return None
        if isinstance(self.crops[self.i], dict):
            self.i += 1
            return self.crops[self.i - 1]
        x = self.crops[self.i][None].astype(self.dtype)
        self.i += 1
        return {self.name: x}

    def rewind(self):
        self.i = 0

    def __len__(self):
        return len(self.crops)


def decoder_nodes(model) -> list[str]:
    """Names of the decoder-tail nodes: everything that is not a Conv, an ancestor of a Conv, or
    an activation (Sigmoid / Clip / Relu) applied directly to a Conv output."""
    producers = {o: n for n in model.graph.node for o in n.output}
    body: set[str] = set()
    stack = [n for n in model.graph.node if n.op_type == "Conv"]
    while stack:
        n = stack.pop()
        if n.name in body:
            continue
        body.add(n.name)
        stack.extend(producers[i] for i in n.input if i in producers)
    for n in model.graph.node:
        if n.op_type in ("Sigmoid", "Clip", "Relu") and n.input[0] in producers \
                and producers[n.input[0]].op_type == "Conv":
            body.add(n.name)
    return [n.name for n in model.graph.node if n.name not in body]


_AFFINE_OPS = ("Sub", "Mul", "Add", "Div")


def _consumers(model, name: str) -> list:
    return [n for n in model.graph.node if name in n.input]


def fold_input_normalization(model, *, as_float: bool = False):
    """Fold MoveNet's float input normalisation into a uint8 DequantizeLinear (see module doc).

    Walks from the integer graph input through Cast / single-output Split / Transpose and
    Sub / Mul / Add / Div with constant operands to the first Conv, measures the chain's per-channel
    affine map ``a_c * x + b_c`` with ONNX Runtime, and (when ``a_c`` is one scale) rewrites it as
    Cast(uint8) -> Transpose(s) -> DequantizeLinear(a, zp = round(-b / a)) whose output keeps the
    Conv's input name. In float that moves the input by ``b + a * zp`` (at most a / 2: half a grey
    level); it is exactly the rounding a quantised first-conv input applies anyway.

    Args:
        model: the fp32 ModelProto.
        as_float: write the exact float map ``(x - (-b / a)) * a`` (Cast / Sub / Mul with scalar
            constants) instead of DequantizeLinear, for a first conv that stays float.

    Returns:
        ``(folded ModelProto, info dict)`` or ``(None, reason)`` when the graph has no such chain.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}

    def const(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    if len(g.input) != 1:
        return None, "graph has more than one input"
    inp = g.input[0]
    if inp.type.tensor_type.elem_type not in (TensorProto.INT32, TensorProto.UINT8, TensorProto.INT64):
        return None, "input is not an integer image"
    chain, cur, perms = [], inp.name, []
    while True:
        users = _consumers(model, cur)
        if len(users) != 1:
            return None, f"tensor {cur!r} has {len(users)} consumers"
        n = users[0]
        if n.op_type == "Conv":
            conv = n
            break
        if n.op_type == "Cast" or (n.op_type == "Split" and len(n.output) == 1):
            pass
        elif n.op_type == "Transpose":
            perms.append(list(helper.get_attribute_value(n.attribute[0])))
        elif n.op_type in _AFFINE_OPS:
            other = [i for i in n.input if i != cur]
            if len(other) != 1 or const(other[0]) is None:
                return None, f"{n.op_type} {n.name!r} has a non-constant operand"
        else:
            return None, f"unsupported op {n.op_type} before the first conv"
        chain.append(n)
        cur = n.output[0]
        if len(chain) > 16:
            return None, "chain too long"
    if not any(n.op_type in _AFFINE_OPS for n in chain):
        return None, "no normalisation before the first conv"
    t = conv.input[0]

    # measure the affine map a_c * x + b_c on the chain alone (NCHW after the transposes)
    used = {i for n in chain for i in n.input}
    sub = helper.make_graph([consts[i] for i in sorted(used) if i in consts] + list(chain), "prep", [inp],
                            [helper.make_tensor_value_info(t, TensorProto.FLOAT, None)],
                            [i for i in g.initializer if i.name in used])
    sub_model = helper.make_model(sub, opset_imports=model.opset_import, ir_version=model.ir_version)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(sub_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
    dt = {TensorProto.INT32: np.int32, TensorProto.UINT8: np.uint8, TensorProto.INT64: np.int64}[
        inp.type.tensor_type.elem_type]
    f0 = sess.run(None, {inp.name: np.zeros(shape, dt)})[0]
    f1 = sess.run(None, {inp.name: np.full(shape, 255, dt)})[0]
    if f0.ndim != 4:
        return None, f"normalised tensor {f0.shape} is not NCHW"
    b = f0[0].reshape(f0.shape[1], -1)
    a = (f1[0].reshape(f0.shape[1], -1) - b) / 255.0
    if np.ptp(a, axis=1).max() > 1e-6 * np.abs(a).max() or np.ptp(b, axis=1).max() > 1e-6:
        return None, "normalisation is not per-channel affine"
    a_c, b_c = a[:, 0].astype(np.float64), b[:, 0].astype(np.float64)
    if a_c.min() <= 0 or np.ptp(a_c) > 1e-6 * a_c.max():
        return None, "channels do not share one positive scale"
    x = np.random.default_rng(0).integers(0, 256, size=shape).astype(dt)
    fx = sess.run(None, {inp.name: x})[0]
    xn = x.astype(np.float64)
    for p in perms:
        xn = np.transpose(xn, p)
    if np.abs(fx - (a_c[None, :, None, None] * xn + b_c[None, :, None, None])).max() > 1e-4:
        return None, "normalisation is not affine in the pixel values"
    scale = float(a_c.mean())
    centre = float(-b_c.mean() / scale)
    if np.ptp(b_c) > 1e-6:
        return None, "channels do not share one offset"
    zp = int(np.clip(np.round(centre), 0, 255))

    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    drop = {n.name for n in chain}
    keep = [n for n in og.node if n.name not in drop]
    pre, name = [], inp.name
    to = TensorProto.FLOAT if as_float else TensorProto.UINT8
    if inp.type.tensor_type.elem_type != to:
        pre.append(helper.make_node("Cast", [name], [t + "_pix"], name=t + "_fold_cast", to=to))
        name = t + "_pix"
    for k, p in enumerate(perms):
        pre.append(helper.make_node("Transpose", [name], [f"{t}_pix_t{k}"], name=f"{t}_fold_transpose{k}", perm=p))
        name = f"{t}_pix_t{k}"
    sname, zname = t + "_fold_scale", t + "_fold_zero_point"
    og.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), sname),
                           numpy_helper.from_array(np.array(centre, np.float32) if as_float else
                                                   np.array(zp, np.uint8), zname)])
    if as_float:
        pre.append(helper.make_node("Sub", [name, zname], [t + "_centred"], name=t + "_fold_sub"))
        pre.append(helper.make_node("Mul", [t + "_centred", sname], [t], name=t + "_fold_mul"))
    else:
        pre.append(helper.make_node("DequantizeLinear", [name, sname, zname], [t], name=t + "_fold_dq"))
    del og.node[:]
    og.node.extend(pre + keep)
    still = {i for n in og.node for i in n.input}
    live = [i for i in og.initializer if i.name in still]
    del og.initializer[:]
    og.initializer.extend(live)
    live_vi = [v for v in og.value_info if v.name in still or any(v.name in n.output for n in og.node)]
    del og.value_info[:]
    og.value_info.extend(live_vi)
    info = {"tensor": t, "conv": conv.name, "scale": scale, "zero_point": zp, "as_float": as_float,
            "input_offset": 0.0 if as_float else float(b_c.mean() + scale * zp), "removed": sorted(drop)}
    return out, info


def _drop_requantize(model, tensor: str) -> int:
    """Remove the Q -> DQ pair the quantiser put on ``tensor`` (already a DequantizeLinear output of
    the folded uint8 input): its consumers read ``tensor`` directly. Returns pairs removed."""
    g = model.graph
    qs = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor]
    removed = 0
    for q in qs:
        dqs = _consumers(model, q.output[0])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue
        for d in dqs:
            for n in g.node:
                for k, i in enumerate(n.input):
                    if i == d.output[0]:
                        n.input[k] = tensor
            g.node.remove(d)
        g.node.remove(q)
        removed += 1
    return removed


def depthwise_convs(model, below: int) -> list[str]:
    """Names of depthwise Conv nodes (group == channels) with fewer than ``below`` channels."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv" or n.input[1] not in inits:
            continue
        group = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "group"), 1)
        w = numpy_helper.to_array(inits[n.input[1]])
        if group > 1 and w.shape[1] == 1 and group == w.shape[0] and group < below:
            out.append(n.name)
    return out


def calibration_ranges(onnx_path: str | os.PathLike, crops, cfg: QuantizeConfig) -> dict:
    """Activation ranges of ``onnx_path`` on ``crops`` with ``cfg.calibration`` (ORT calibrator).

    Returns:
        ``(TensorsData, {tensor: (low, high)})``.
    """
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[cfg.calibration]
    extra = {"symmetric": cfg.symmetric_activations}
    if cfg.calibration in ("percentile", "entropy"):
        extra.update(num_bins=cfg.num_bins)
    if cfg.calibration == "percentile":
        extra["percentile"] = cfg.percentile
    if cfg.calibration == "entropy":
        extra["num_quantized_bins"] = cfg.num_quantized_bins
    model = onnx.load(os.fspath(onnx_path))
    inp = model.graph.input[0]
    dtype = {6: np.int32, 2: np.uint8, 1: np.float32}[inp.type.tensor_type.elem_type]
    with tempfile.TemporaryDirectory(prefix="edgepose-calib-") as tmp:
        cal = create_calibrator(Path(onnx_path), list(cfg.op_types),
                                augmented_model_path=os.path.join(tmp, "augmented.onnx"),
                                calibrate_method=method, extra_options=extra)
        cal.collect_data(_Reader(inp.name, crops, dtype))
        data = cal.compute_data()
    ranges = {k: (float(np.asarray(v.range_value[0]).min()), float(np.asarray(v.range_value[1]).max()))
              for k, v in data.data.items()}
    return data, ranges


def quantize(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, cfg: QuantizeConfig = QuantizeConfig(),
             *, calibration, nodes_to_quantize: list[str] | None = None, tensors_data=None) -> QuantizeResult:
    """Statically quantise ``onnx_in`` to int8 (QDQ unless ``cfg.quant_format``) at ``onnx_out``.

    Args:
        onnx_in: fp32 ONNX (e.g. from :func:`export_onnx`); its ``edgepose.*`` metadata is kept and
            ``edgepose.quantization`` added.
        onnx_out: output path.
        cfg: options.
        calibration: (H, W, 3) uint8 crops from the *training* frames (never the evaluation set).
        nodes_to_quantize: quantise only these nodes (the per-layer sensitivity pass).
        tensors_data: calibration result to reuse (from :func:`calibration_ranges`), skipping
            the calibration run.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    from ..export.onnx_export import set_metadata

    crops = list(calibration)[: cfg.num_calibration]
    if not crops:
        raise ConfigError("quantize() needs calibration crops from the training frames; got none "
                         "(pass calibration_crops(labels, 64, out_size=...))")
    src = onnx.load(os.fspath(onnx_in))
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[cfg.calibration]
    with tempfile.TemporaryDirectory(prefix="edgepose-quant-") as tmp:
        model_in, fold, src_q = os.fspath(onnx_in), {}, src
        if cfg.fold_input:
            folded, fold = fold_input_normalization(src)
            if folded is not None and (fold["conv"] in cfg.exclude_nodes or "Conv" not in cfg.op_types
                                       or cfg.activation_type != "uint8"
                                       or (nodes_to_quantize is not None and fold["conv"] not in nodes_to_quantize)):
                # the first conv stays float (or reads int8, which the uint8 pixels are not): float fold
                folded, fold = fold_input_normalization(src, as_float=True)
            if folded is None:
                log.info("input fold skipped: %s", fold)
                fold = {"skipped": fold}
            else:
                model_in, src_q = os.path.join(tmp, "folded.onnx"), folded
                onnx.save(folded, model_in)
        if tensors_data is None:  # on the unfolded graph: every range as without the fold
            data, ranges = calibration_ranges(onnx_in, crops, cfg)
        else:
            data = tensors_data
            ranges = {k: (float(np.asarray(v.range_value[0]).min()), float(np.asarray(v.range_value[1]).max()))
                      for k, v in data.data.items()}
        excluded = (decoder_nodes(src_q) if cfg.exclude_decoder else []) + list(cfg.exclude_nodes)
        excluded += [n.name for n in src_q.graph.node if n.name.endswith(("_fold_sub", "_fold_mul"))]
        if cfg.exclude_depthwise_below:
            excluded += [n for n in depthwise_convs(src_q, cfg.exclude_depthwise_below) if n not in excluded]
        cache = os.path.join(tmp, "calib.cache")
        save_tensors_data(data, cache)
        tmp_out = os.path.join(tmp, "q.onnx")
        quantize_static(model_in, tmp_out, calibration_data_reader=None,
                        quant_format=QuantFormat.QDQ if cfg.quant_format == "qdq" else QuantFormat.QOperator,
                        op_types_to_quantize=list(cfg.op_types), per_channel=cfg.per_channel,
                        reduce_range=cfg.reduce_range,
                        activation_type=QuantType.QUInt8 if cfg.activation_type == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8 if cfg.weight_type == "int8" else QuantType.QUInt8,
                        nodes_to_exclude=excluded,
                        nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize is not None else None,
                        calibrate_method=method, calibration_cache_path=cache,
                        extra_options={"ActivationSymmetric": cfg.symmetric_activations})
        q = onnx.load(tmp_out)
    if fold and "skipped" not in fold and not fold["as_float"]:
        fold["requantize_removed"] = _drop_requantize(q, fold["tensor"])
    meta = {p.key: p.value for p in src.metadata_props}
    meta["edgepose.quantization"] = json.dumps({"method": f"ort-static-{cfg.quant_format}", **cfg.to_dict()},
                                               sort_keys=True)
    set_metadata(q, meta)
    onnx.save(q, os.fspath(onnx_out))
    log.info("quantised %s -> %s (%s, %d float decoder nodes)", onnx_in, onnx_out, cfg.calibration, len(excluded))
    return QuantizeResult(os.fspath(onnx_out), ranges, excluded, fold)
