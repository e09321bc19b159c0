"""``quantize(onnx_in, onnx_out, cfg, calibration=...)``: ONNX Runtime static QDQ int8.

Weights per-channel int8, activations int8 (QDQ format, what ORT's CPU kernels fuse fastest here;
DESIGN.md §6: dynamic int8 ran ~2x slower and per-tensor lost accuracy on pruned nets).

Calibration ranges are computed here, not inside ``quantize_static``, because ORT does not pass
the histogram settings through (its Entropy default of 128 bins / 128 quantised bins leaves one
candidate threshold, so it gave exactly the MinMax model). We run the calibrator with explicit
bins, write the ranges to ORT's calibration cache and quantise from it; :func:`calibration_ranges`
lets a test check that each method really changes the ranges.

Only the network is quantised: the decoder tail (ArgMax / Gather / distance maths after the heads)
stays float via ``nodes_to_exclude`` so keypoint coordinates keep full precision.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

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
    version: int = 1

    def __post_init__(self):
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"QuantizeConfig.calibration={self.calibration!r} is not one of "
                             f"{', '.join(CALIBRATIONS)}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"QuantizeConfig.percentile must be in (50, 100], got {self.percentile!r}")
        if self.num_bins < self.num_quantized_bins:
            raise ValueError(f"QuantizeConfig.num_bins ({self.num_bins}) must be >= num_quantized_bins "
                             f"({self.num_quantized_bins})")
        if self.activation_type not in ("uint8", "int8"):
            raise ValueError(f"QuantizeConfig.activation_type={self.activation_type!r} is not one of "
                             "uint8, int8")
        if self.num_calibration < 1:
            raise ValueError(f"QuantizeConfig.num_calibration must be >= 1, got {self.num_calibration!r}")

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
    """

    path: str
    ranges: dict = field(default_factory=dict)
    excluded: list = field(default_factory=list)


class _Reader:
    """ORT CalibrationDataReader over a list of uint8 crops."""

    def __init__(self, name: str, crops, dtype):
        self.name, self.crops, self.dtype = name, list(crops), dtype
        self.i = 0

    def get_next(self):
        if self.i >= len(self.crops):
            return None
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
    """Statically quantise ``onnx_in`` to int8 QDQ at ``onnx_out``.

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
        raise ValueError("quantize() needs calibration crops from the training frames; got none "
                         "(pass calibration_crops(labels, 64, out_size=...))")
    if tensors_data is None:
        data, ranges = calibration_ranges(onnx_in, crops, cfg)
    else:
        data = tensors_data
        ranges = {k: (float(np.asarray(v.range_value[0]).min()), float(np.asarray(v.range_value[1]).max()))
                  for k, v in data.data.items()}
    src = onnx.load(os.fspath(onnx_in))
    excluded = (decoder_nodes(src) if cfg.exclude_decoder else []) + list(cfg.exclude_nodes)
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[cfg.calibration]
    with tempfile.TemporaryDirectory(prefix="edgepose-quant-") as tmp:
        cache = os.path.join(tmp, "calib.cache")
        save_tensors_data(data, cache)
        tmp_out = os.path.join(tmp, "q.onnx")
        quantize_static(os.fspath(onnx_in), tmp_out, calibration_data_reader=None,
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(cfg.op_types),
                        per_channel=cfg.per_channel,
                        activation_type=QuantType.QUInt8 if cfg.activation_type == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                        nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize is not None else None,
                        calibrate_method=method, calibration_cache_path=cache,
                        extra_options={"ActivationSymmetric": cfg.symmetric_activations})
        q = onnx.load(tmp_out)
    meta = {p.key: p.value for p in src.metadata_props}
    meta["edgepose.quantization"] = json.dumps({"method": "ort-static-qdq", **cfg.to_dict()}, sort_keys=True)
    set_metadata(q, meta)
    onnx.save(q, os.fspath(onnx_out))
    log.info("quantised %s -> %s (%s, %d float decoder nodes)", onnx_in, onnx_out, cfg.calibration, len(excluded))
    return QuantizeResult(os.fspath(onnx_out), ranges, excluded)
