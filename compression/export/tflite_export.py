"""Export an imported / compressed MoveNet to TFLite (fp32 or int8) with litert-torch.

The file reads like the official MoveNet TFLite: ``[1, H, W, 3]`` uint8 RGB in, ``[1, 1, 17, 3]``
(y, x, score) out, so the runtime's MoveNet card runs it through LiteRT (XNNPACK). The
``edgepose.*`` metadata (as in :func:`~.onnx_export.export_onnx`) is appended as a zip entry
``edgepose.json`` that LiteRT ignores and :func:`edgepose.backends.litert.read_tflite_metadata`
reads back.

int8 is static quantisation through litert-torch's PT2E quantizer (per-channel symmetric int8
weights, int8 activations), calibrated on training crops: post-training (histogram or min/max
ranges), or with quantisation-aware fine-tuning toward the float model's own outputs
(``qat=``, :mod:`edgepose.compression.quantize.qat`). Only the network body is quantised: it is
exported and calibrated on its own, then wrapped with the float input normalisation and the
float MoveNet decoder (argmax / gathers on integer indices would otherwise get observers, and
keypoint coordinates keep full precision).

The decoder reads the regression head at one cell (the centre) and the offset head at 17 (the
keypoints). With ``sparse_heads`` (default) those heads' trailing 1x1 convolutions are not run
over the 48x48 map: the body returns the features before them and the decoder applies them to
the gathered feature vectors only (exact: a 1x1 convolution at a cell reads only that cell).
The decoder is written channels-last (LiteRT's layout) so the float maps are never transposed.

litert-torch is not in the dev extras (installed ``--no-deps`` where used); tests that need it
are ``@pytest.mark.slow``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..importer.movenet import MoveNetTorch
from .onnx_export import ExportConfig, build_metadata, sha256_of
from edgepose.errors import CompressionError, ConfigError

from ..quantize.tflite_int8 import _FloatSigmoid, _LogitBody, _exact_input_shift, _quantized_body

log = logging.getLogger(__name__)

#: Joints the float model scores at least this are the ones the int8 mean-error guard counts.
CONFIDENT_SCORE = 0.3


@dataclass
class TFLiteExportResult:
    """What :func:`export_tflite` wrote and how well it matches torch (fp32 reference).

    Attributes:
        path / sha256: the ``.tflite`` file.
        int8: whether it is the int8 build.
        max_px / mean_px: largest keypoint difference (every joint) / mean difference over the
            joints the float model scores >= ``CONFIDENT_SCORE``, vs the float torch model (input
            px) on the check inputs (int8: the quantisation error, not a parity bug).
        seconds: conversion time.
    """

    path: str
    sha256: str
    int8: bool
    max_px: float
    mean_px: float
    seconds: float
    metadata: dict = field(default_factory=dict)


class _PointwiseChain(torch.nn.Module):
    """A head's trailing 1x1 convolutions and activations, applied to feature vectors.

    Equal to running them over the whole map and reading the result at the same cells: a 1x1
    convolution at one cell only reads that cell."""

    def __init__(self, ops: list[tuple[str, object]]):
        super().__init__()
        self.kinds = []
        self.convs = torch.nn.ModuleList()
        for kind, arg in ops:
            if kind == "conv":
                lin = torch.nn.Linear(arg.in_channels, arg.out_channels, bias=arg.bias is not None)
                with torch.no_grad():
                    lin.weight.copy_(arg.weight.detach().reshape(arg.out_channels, arg.in_channels))
                    if arg.bias is not None:
                        lin.bias.copy_(arg.bias.detach())
                self.convs.append(lin)
                self.kinds.append(("conv", len(self.convs) - 1))
            else:
                self.kinds.append((kind, arg))

    def forward(self, x):
        for kind, arg in self.kinds:
            if kind == "conv":
                x = self.convs[arg](x)
            elif kind == "Relu":
                x = torch.relu(x)
            else:  # Clip
                x = torch.clamp(x, arg[0], arg[1])
        return x


def _sparse_head_chains(body, heads=(2, 3)) -> dict[int, tuple[str, list, list[str]]]:
    """For the heads the decoder only reads at a few cells (regression at the centre, offsets at
    the 17 keypoints), the trailing run of 1x1 convolutions / activations that can be evaluated at
    those cells alone: head index -> (stem tensor, chain ops, step outputs it replaces).

    A run stops at the first step that is not a stride-1, ungrouped, unpadded 1x1 convolution or a
    Relu / Clip, or whose input another step also reads (it must stay a map then)."""
    producers = {s.output: s for s in body.steps}
    readers: dict[str, int] = {}
    for s in body.steps:
        for t in s.inputs:
            readers[t] = readers.get(t, 0) + 1
    out = {}
    for i in heads:
        t, ops, dropped = body.head_tensors[i], [], []
        if readers.get(t, 0):  # the head map itself feeds another step: keep it a map
            continue
        while t in producers:
            s = producers[t]
            m = body.layers[s.module] if s.module else None
            if s.op == "Conv" and isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) \
                    and m.stride == (1, 1) and m.groups == 1 and not s.params.get("pad") \
                    and m.padding in ((0, 0), "valid"):
                ops.append(("conv", m))
            elif s.op == "Relu" and len(s.inputs) == 1:
                ops.append(("Relu", None))
            elif s.op == "Clip":
                ops.append(("Clip", (s.params["min"], s.params["max"])))
            else:
                break
            dropped.append(s.output)
            t = s.inputs[0]
            if readers.get(t, 0) > 1 or t == body.input_name:
                break
        if any(k == "conv" for k, _ in ops):
            out[i] = (t, _PointwiseChain(list(reversed(ops))), dropped)
    return out


def _body_returning(body, replace: dict[int, str], drop: set[str]):
    """A shallow copy of ``body`` whose head ``i`` is the tensor ``replace[i]``, without the steps
    producing ``drop`` (nothing else reads them)."""
    import copy

    b = copy.copy(body)
    b.steps = [s for s in body.steps if s.output not in drop]
    heads = list(body.head_tensors)
    for i, t in replace.items():
        heads[i] = t
    b.head_tensors = heads
    return b


class _TFLiteDeploy(torch.nn.Module):
    """uint8 NHWC RGB -> normalise -> ``body`` (float or PT2E-quantised graph) -> decoder.

    ``chains`` (head index -> :class:`_PointwiseChain`): the body returns that head's stem
    features instead of its map, and the decoder runs the chain only at the cells it reads.
    ``shift``: the input normalisation's offset instead of the network's (exact int8 input)."""

    def __init__(self, net: MoveNetTorch, body: torch.nn.Module, chains: dict | None = None,
                 shift: float | None = None):
        super().__init__()
        self.body = body
        d = net.decode
        self.register_buffer("center_weight", torch.tensor(d.center_weight))
        self.register_buffer("out_scale", torch.tensor(d.out_scale))
        self.register_buffer("scale", net.scale.detach().clone())
        self.register_buffer("shift", net.shift.detach().clone() if shift is None else torch.full_like(net.shift, shift))
        self.dist_offset = float(d.dist_offset)
        k = int(net.body.layers[_head_conv_name(net.body, 0)].out_channels)
        self.register_buffer("eye", torch.eye(k).view(1, k, k, 1))  # a constant: LiteRT has no IOTA
        chains = chains or {}
        self.reg_chain = chains.get(2, torch.nn.Identity())
        self.off_chain = chains.get(3, torch.nn.Identity())
        # A float barrier on the output: the converter propagates int8 through gather / concat
        # and would otherwise emit an int8 output (and a wrong score column); adding a constant
        # that cannot be folded (non-uniform, ~1e-12) keeps the last op, and the output, float.
        self.register_buffer("barrier", torch.arange(51, dtype=torch.float32).reshape(1, 1, 17, 3) * 1e-12)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = rgb.to(torch.float32).permute(0, 3, 1, 2) * self.scale + self.shift
        heat, ctr, reg, off = self.body(x)
        return _decode_nhwc(heat, ctr, reg, off, self.reg_chain, self.off_chain, self.eye, self.center_weight,
                            self.dist_offset, self.out_scale).unsqueeze(1) + self.barrier


def _head_conv_name(body, i: int) -> str:
    """The ``body.layers`` name of the last convolution producing head ``i``."""
    producers = {s.output: s for s in body.steps}
    s = producers[body.head_tensors[i]]
    while s.op != "Conv":
        s = producers[s.inputs[0]]
    return s.module


def _cells(maps: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) maps read at flat cells ``idx`` (n, m) -> (n, m, c), in the converter's NHWC
    layout (no transpose of the map)."""
    n, c, h, w = maps.shape
    flat = maps.permute(0, 2, 3, 1).reshape(n, h * w, c)
    return torch.gather(flat, 1, idx.unsqueeze(2).expand(n, idx.shape[1], c))


def _decode_nhwc(heatmap, center, regress, offset, reg_chain, off_chain, eye, center_weight, dist_offset: float,
                 out_scale):
    """:func:`~edgepose.compression.importer.movenet.decode_heads_torch` written for LiteRT: the
    maps stay in NHWC (channels last: no float transposes), the score is a gather of the float
    heatmap, and the regression / offset heads are read at their cells (through their chains
    when the body returned stems)."""
    n, k, h, w = heatmap.shape
    ctr = center.reshape(n, h * w) * center_weight.reshape(1, h * w)
    ci = torch.argmax(ctr, dim=1)
    cy = torch.div(ci, w, rounding_mode="floor")
    cx = ci - cy * w
    reg = reg_chain(_cells(regress, ci.view(n, 1))).reshape(n, k, 2)
    ry = cy.view(n, 1).to(heatmap.dtype) + reg[..., 0]
    rx = cx.view(n, 1).to(heatmap.dtype) + reg[..., 1]
    yy = torch.arange(h, dtype=heatmap.dtype).view(1, h, 1, 1)
    xx = torch.arange(w, dtype=heatmap.dtype).view(1, 1, w, 1)
    dist = torch.sqrt((yy - ry.view(n, 1, 1, k)) ** 2 + (xx - rx.view(n, 1, 1, k)) ** 2) + dist_offset
    heat = heatmap.permute(0, 2, 3, 1)
    idx = torch.argmax((heat / dist).reshape(n, h * w, k), dim=1)  # (n, k)
    ky = torch.div(idx, w, rounding_mode="floor")
    kx = idx - ky * w
    score = torch.gather(heat.reshape(n, h * w, k), 1, idx.view(n, 1, k)).reshape(n, k)
    # joint j's offset is channel pair j of the offset head read at joint j's cell
    off = (off_chain(_cells(offset, idx)).reshape(n, k, k, 2) * eye).sum(dim=2)
    y = (ky.to(heatmap.dtype) + off[..., 0]) * out_scale[0]
    x = (kx.to(heatmap.dtype) + off[..., 1]) * out_scale[1]
    return torch.stack([y, x, score], dim=2)


def _run_tflite(path: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from edgepose._optional import require

    interpreter = require("ai_edge_litert.interpreter", "tflite", package="ai-edge-litert")
    it = interpreter.Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for x in inputs:
        it.set_tensor(i, x)
        it.invoke()
        out.append(it.get_tensor(o).reshape(17, 3).copy())
    return out


def export_tflite(net: MoveNetTorch, path: str | os.PathLike, cfg: ExportConfig = ExportConfig(), *,
                  int8: bool = False, calibration: list[np.ndarray] | None = None,
                  compression: dict | None = None, check_crops: list[np.ndarray] | None = None,
                  int8_tol_px: float = 8.0, float_layers: tuple[str, ...] = (),
                  calibration_method: str = "histogram", sparse_heads: bool = True,
                  qat=None, qat_draw=None, input_centre: bool = True,
                  exact_input: bool = False) -> TFLiteExportResult:
    """Export ``net`` (with its decoder) to ``path`` as fp32 or int8 TFLite and check it in LiteRT.

    Args:
        net: the imported (possibly pruned / fine-tuned) model.
        path: output ``.tflite``.
        cfg: shared export options (card, parity tolerance for fp32, check inputs).
        int8: PT2E static int8 (needs ``calibration``).
        calibration: (H, W, 3) uint8 crops from the training frames (never the evaluation set).
        compression: what was done (stored in the metadata).
        check_crops: real crops for the check (random inputs otherwise).
        int8_tol_px: largest allowed *mean* keypoint difference of the int8 build (a gross error
            guard; accuracy is measured on the evaluation set, not here).
        float_layers: ``body.layers`` names kept float in the int8 build (the most sensitive
            convolutions, e.g. the first one on the raw image).
        calibration_method: activation ranges of the int8 build: ``"histogram"`` (litert-torch's
            default observer, error-minimising ranges) or ``"minmax"`` (the calibration set's
            min / max, as ONNX Runtime's default ``quantize`` calibration).
        sparse_heads: evaluate the regression and offset heads' trailing 1x1 convolutions only
            at the cells the decoder reads (the centre, the 17 keypoints) instead of over the
            whole 48x48 map: the same result (a 1x1 convolution at a cell reads only that cell),
            about 10 % fewer MACs for MoveNet Lightning; in the int8 build those few vectors
            are computed in float. ``False`` exports the dense graph.
        qat: a :class:`~edgepose.compression.quantize.qat.QATConfig`: instead of post-training
            ranges, quantisation-aware fine-tuning of the int8 body toward the float model's
            own outputs (calibrated first on ``calibration``; ``calibration_method`` and
            ``float_layers`` do not apply).
        qat_draw: ``draw(rng, n)`` -> (n, H, W, 3) uint8 augmented training crops for ``qat``.
        input_centre: post-training int8: move the input normalisation's offset half a pixel
            level, to the pixel value 128 (:func:`_exact_input_shift`; MoveNet's is 127.5), so
            the int8 input can sit on the pixel grid. The input's scale stays calibrated.
            Chosen for the shipped recipe on held-out training crops
            (docs/research-notes.md C4).
        exact_input: with ``input_centre``, also fix the input's int8 qparams at
            ``(s, 0)``: the quantised input is then the pixel minus 128 exactly.
        Both are ignored with ``qat`` or a normalisation they do not fit.

    Raises:
        edgepose.errors.MissingDependencyError: litert-torch / ai-edge-litert missing.
        ValueError: int8 without calibration crops.
        RuntimeError: the fp32 build differs from torch by more than ``cfg.parity_tol_px`` px, or
            the int8 build's mean error exceeds ``int8_tol_px``.
    """
    from edgepose._optional import require

    if calibration_method not in ("histogram", "minmax"):
        raise ConfigError(f"calibration_method {calibration_method!r} is not one of histogram, minmax; "
                         "pass calibration_method='histogram' (default) or 'minmax'")
    if qat is not None and (not int8 or float_layers or (qat.steps and qat_draw is None)):
        raise ConfigError("export_tflite(qat=...) needs int8=True and qat_draw (training crops), without "
                         f"float_layers; got int8={int8}, float_layers={tuple(float_layers)}, "
                         f"qat_draw={'set' if qat_draw is not None else None}")
    litert_torch = require("litert_torch", "compress", package="litert-torch")
    if int8 and not calibration:
        raise ConfigError("export_tflite(int8=True) needs calibration crops from the training frames "
                         "(calibration_crops(labels, 64, out_size=...)); got none")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    w, h = net.input_size
    args = (torch.zeros(1, h, w, 3, dtype=torch.uint8),)
    t0 = time.perf_counter()
    comp = dict(compression or {})
    chains = _sparse_head_chains(net.body) if sparse_heads else {}
    stems = _body_returning(net.body, {i: c[0] for i, c in chains.items()},
                            {t for c in chains.values() for t in c[2]})
    chains = {i: c[1] for i, c in chains.items()}
    if chains:
        comp["tflite_sparse_heads"] = [net.body.head_names[i] for i in sorted(chains)]
    dropped = {n for n, mod in net.body.layers.items() if not any(s.module == n for s in stems.steps)}
    float_layers = tuple(n for n in float_layers if n not in dropped)  # sparse-head convs run float anyway
    if int8:
        from litert_torch.quantize.quant_config import QuantConfig

        if qat is not None:
            from ..quantize.qat import qat_body

            logits = _LogitBody(stems).eval()
            gm, q, hist = qat_body(logits, lambda a: net.normalise(torch.from_numpy(np.ascontiguousarray(a))),
                                   list(calibration), qat_draw, qat, sigmoid_outputs=tuple(logits.sigmoid))
            body = _FloatSigmoid(gm, logits.sigmoid)
            comp["tflite_qat"] = {**dataclasses.asdict(qat), "loss_first": hist[0]["loss"] if hist else None,
                                  "loss_last": hist[-1]["loss"] if hist else None}
            shift = None
        else:
            shift = _exact_input_shift(net) if input_centre or exact_input else None
            body, q = _quantized_body(net, list(calibration), float_layers, calibration_method, body=stems,
                                      input_shift=shift, exact_input=exact_input)
            if shift is not None:
                comp["tflite_input"] = {"normalisation_shift": shift,
                                        "int8": "pixel - 128 (exact)" if exact_input else "calibrated scale"}
        # no .eval() below: PT2E graph modules refuse train/eval switches
        deploy = _TFLiteDeploy(net, body, chains, shift=shift)
        litert_torch.convert(deploy, args, quant_config=QuantConfig(pt2e_quantizer=q)).export(os.fspath(path))
        comp["tflite_quantization"] = {"method": "litert-torch-pt2e-" + ("qat" if qat is not None else "static"),
                                       "weights": "int8 per-channel symmetric",
                                       "activations": "int8 per-tensor (" + ("moving-average fake-quantise, QAT"
                                                                            if qat is not None else calibration_method)
                                                      + ")",
                                       "calibration_crops": len(calibration), "float_layers": list(float_layers)}
    else:
        deploy = _TFLiteDeploy(net, stems, chains).eval()
        litert_torch.convert(deploy, args).export(os.fspath(path))
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    inputs = [np.ascontiguousarray(c[None]).astype(np.uint8) for c in (check_crops or [])][: cfg.check_inputs]
    while len(inputs) < cfg.check_inputs:
        inputs.append(rng.integers(0, 256, size=(1, h, w, 3), dtype=np.uint8))
    ref_deploy = _TFLiteDeploy(net, net.body).eval()
    with torch.no_grad():
        ref = [ref_deploy(torch.from_numpy(x)).numpy().reshape(17, 3) for x in inputs]
    got = _run_tflite(os.fspath(path), inputs)
    diffs = np.stack([np.abs(g[:, :2] - r[:, :2]) for g, r in zip(got, ref)]) * max(w, h)  # (N, 17, 2)
    # the int8 guard looks at the joints the float model is sure of: an unsure joint's heatmap is
    # flat, and its argmax can jump across the crop under any rounding (3 px or 10 px mean on the
    # same 4 crops from one conversion to the next when every joint counted)
    sure = np.stack([r[:, 2] >= CONFIDENT_SCORE for r in ref])
    max_px = float(diffs.max())
    mean_px = float(diffs[sure].mean()) if sure.any() else float(diffs.mean())
    score_diff = float(np.mean([np.abs(g[:, 2] - r[:, 2]).mean() for g, r in zip(got, ref)]))
    if not int8 and max_px > cfg.parity_tol_px:
        raise CompressionError(f"TFLite export differs from torch by {max_px:.3f} px (> parity_tol_px="
                           f"{cfg.parity_tol_px}); the file is at {str(path)!r} for inspection")
    if score_diff > (0.15 if int8 else 1e-3):
        raise CompressionError(f"{'int8' if int8 else 'fp32'} TFLite scores differ from torch by {score_diff:.3f} on "
                           f"average; the file is at {str(path)!r} for inspection")
    if int8 and mean_px > int8_tol_px:
        raise CompressionError(f"int8 TFLite keypoints differ from the float model by {mean_px:.1f} px on average "
                           f"(> int8_tol_px={int8_tol_px}): calibration failed; file at {str(path)!r}")
    meta = build_metadata(net, cfg, comp)
    meta["edgepose.runtime"] = "litert"
    with zipfile.ZipFile(path, "a") as zf:  # appended after the flatbuffer; LiteRT ignores it
        zf.writestr("edgepose.json", json.dumps(meta))
    log.info("exported %s TFLite %s in %.1fs (max %.3f px, mean %.3f px vs torch)", "int8" if int8 else "fp32",
             path, seconds, max_px, mean_px)
    return TFLiteExportResult(os.fspath(path), sha256_of(path), int8, max_px, mean_px, seconds, meta)


__all__ = ["TFLiteExportResult", "export_tflite"]
