"""Export an imported / compressed MoveNet to TFLite (fp32 or int8) with litert-torch.

The file reads like the official MoveNet TFLite: ``[1, H, W, 3]`` uint8 RGB in, ``[1, 1, 17, 3]``
(y, x, score) out, so the runtime's MoveNet card runs it through LiteRT (XNNPACK). The
``edgepose.*`` metadata (as in :func:`~.onnx_export.export_onnx`) is appended as a zip entry
``edgepose.json`` that LiteRT ignores and :func:`edgepose.backends.litert.read_tflite_metadata`
reads back.

int8 is post-training static quantisation through litert-torch's PT2E quantizer (per-channel
symmetric int8 weights, int8 activations with histogram observers), calibrated on training
crops. Only the network body is quantised: it is exported and calibrated on its own, then wrapped
with the float input normalisation and the float MoveNet decoder (argmax / gathers on integer
indices would otherwise get observers, and keypoint coordinates keep full precision).

litert-torch is not in the dev extras (installed ``--no-deps`` where used); tests that need it
are ``@pytest.mark.slow``.
"""

from __future__ import annotations

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


class _TFLiteDeploy(torch.nn.Module):
    """uint8 NHWC RGB -> normalise -> ``body`` (float or PT2E-quantised graph) -> decoder."""

    def __init__(self, net: MoveNetTorch, body: torch.nn.Module):
        super().__init__()
        self.body = body
        d = net.decode
        self.register_buffer("center_weight", torch.tensor(d.center_weight))
        self.register_buffer("out_scale", torch.tensor(d.out_scale))
        self.register_buffer("scale", net.scale.detach().clone())
        self.register_buffer("shift", net.shift.detach().clone())
        self.dist_offset = float(d.dist_offset)
        # A float barrier on the output: the converter propagates int8 through gather / concat
        # and would otherwise emit an int8 output (and a wrong score column); adding a constant
        # that cannot be folded (non-uniform, ~1e-12) keeps the last op, and the output, float.
        self.register_buffer("barrier", torch.arange(51, dtype=torch.float32).reshape(1, 1, 17, 3) * 1e-12)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = rgb.to(torch.float32).permute(0, 3, 1, 2) * self.scale + self.shift
        heat, ctr, reg, off = self.body(x)
        return _decode_masked_score(heat, ctr, reg, off, self.center_weight, self.dist_offset,
                                    self.out_scale).unsqueeze(1) + self.barrier


def _decode_masked_score(heatmap, center, regress, offset, center_weight, dist_offset: float, out_scale):
    """:func:`~edgepose.compression.importer.movenet.decode_heads_torch` with the score read as a
    masked max instead of a gather: identical in float, but the converter's int8 GATHER_ND of the
    sigmoid map returned 0 for every score in the int8 build."""
    n, k, h, w = heatmap.shape
    ctr = center.reshape(n, h * w) * center_weight.reshape(1, h * w)
    ci = torch.argmax(ctr, dim=1)
    cy = torch.div(ci, w, rounding_mode="floor")
    cx = ci - cy * w
    reg = torch.gather(regress.reshape(n, 2 * k, h * w), 2, ci.view(n, 1, 1).expand(n, 2 * k, 1)).reshape(n, k, 2)
    ry = cy.view(n, 1).to(heatmap.dtype) + reg[..., 0]
    rx = cx.view(n, 1).to(heatmap.dtype) + reg[..., 1]
    yy = torch.arange(h, dtype=heatmap.dtype).view(1, 1, h, 1)
    xx = torch.arange(w, dtype=heatmap.dtype).view(1, 1, 1, w)
    dist = torch.sqrt((yy - ry.view(n, k, 1, 1)) ** 2 + (xx - rx.view(n, k, 1, 1)) ** 2) + dist_offset
    idx = torch.argmax((heatmap / dist).reshape(n, k, h * w), dim=2)
    ky = torch.div(idx, w, rounding_mode="floor")
    kx = idx - ky * w
    mask = (torch.arange(h * w).view(1, 1, h * w) == idx.unsqueeze(2)).to(heatmap.dtype)
    score = (heatmap.reshape(n, k, h * w) * mask).amax(dim=2)
    off = torch.gather(offset.reshape(n, k, 2, h * w), 3, idx.view(n, k, 1, 1).expand(n, k, 2, 1)).squeeze(3)
    y = (ky.to(heatmap.dtype) + off[..., 0]) * out_scale[0]
    x = (kx.to(heatmap.dtype) + off[..., 1]) * out_scale[1]
    return torch.stack([y, x, score], dim=2)


class _LogitBody(torch.nn.Module):
    """The body with its Sigmoid heads returned as logits (sigmoid applied in float after int8)."""

    def __init__(self, body):
        super().__init__()
        import copy

        self.body = copy.copy(body)
        producers = {s.output: s for s in body.steps}
        heads = list(body.head_tensors)
        self.sigmoid = []
        for i, t in enumerate(heads):
            s = producers[t]
            if s.op == "Sigmoid":
                heads[i] = s.inputs[0]
                self.sigmoid.append(i)
        self.body.head_tensors = heads

    def forward(self, x):
        return self.body(x)


class _FloatSigmoid(torch.nn.Module):
    """Quantised logit body -> float sigmoid (as exp / reciprocal, kept out of int8 by the converter)."""

    def __init__(self, qbody, which):
        super().__init__()
        self.qbody, self.which = qbody, list(which)

    def forward(self, x):
        outs = list(self.qbody(x))
        for i in self.which:
            outs[i] = 1.0 / (1.0 + torch.exp(-outs[i]))
        return tuple(outs)


def _pt2e_module_name(graph_module, layer: str) -> str | None:
    """The name litert-torch's module-name filter derives for ``body.layers[layer]`` in this graph.

    The filter strips a fixed ``L__self___`` prefix from the ``nn_module_stack`` keys and turns
    ``_`` into ``.``; torch's key format varies between releases, so the name is read off the
    exported graph rather than guessed."""
    for n in graph_module.graph.nodes:
        for k in n.meta.get("nn_module_stack", {}):
            if k.endswith("layers." + layer) or k.endswith("layers_" + layer):
                return k[len("L__self___"):].replace("_", ".")
    return None


def _quantized_body(net: MoveNetTorch, calibration: list[np.ndarray], float_layers=(), calibration_method="histogram"):
    """The body as a PT2E int8 graph module calibrated on ``calibration`` crops, and its quantizer.

    The heads' Sigmoids stay float: quantised, the sigmoid heatmap came out of the converter as
    zeros (scores 0, keypoints from the regression alone)."""
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import quantize_pt2e

    def norm(c):
        return net.normalise(torch.from_numpy(np.ascontiguousarray(c))[None])

    logits = _LogitBody(net.body).eval()
    with torch.no_grad():
        m = torch.export.export(logits, (norm(calibration[0]),)).module()
    qcfg = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
    if calibration_method == "minmax":  # activation ranges = the calibration min / max (ORT's default)
        import dataclasses

        act = dataclasses.replace(qcfg.input_activation,
                                  observer_or_fake_quant_ctr=pt2e_quantizer.MinMaxObserver.with_args(eps=2**-12))
        qcfg = dataclasses.replace(qcfg, input_activation=act, output_activation=act)
    q = pt2e_quantizer.PT2EQuantizer().set_global(qcfg)
    if float_layers:
        from litert_torch.quantize.pt2e_quantizer_utils import QuantizationConfig

        off = QuantizationConfig(None, None, None, None, False, False)  # annotate nothing: stays float
        for layer in float_layers:
            name = _pt2e_module_name(m, layer)
            if name is None:
                raise ValueError(f"float layer {layer!r} is not a module of the body; valid: body.layers keys")
            q.set_module_name(name, off)
    m = quantize_pt2e.prepare_pt2e(m, q)
    with torch.no_grad():
        for c in calibration:
            m(norm(c))
    return _FloatSigmoid(quantize_pt2e.convert_pt2e(m, fold_quantize=False), logits.sigmoid), q


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
                  calibration_method: str = "histogram") -> TFLiteExportResult:
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

    Raises:
        edgepose.errors.MissingDependencyError: litert-torch / ai-edge-litert missing.
        ValueError: int8 without calibration crops.
        RuntimeError: the fp32 build differs from torch by more than ``cfg.parity_tol_px`` px, or
            the int8 build's mean error exceeds ``int8_tol_px``.
    """
    from edgepose._optional import require

    if calibration_method not in ("histogram", "minmax"):
        raise ValueError(f"calibration_method {calibration_method!r} is not one of histogram, minmax; "
                         "pass calibration_method='histogram' (default) or 'minmax'")
    litert_torch = require("litert_torch", "compress", package="litert-torch")
    if int8 and not calibration:
        raise ValueError("export_tflite(int8=True) needs calibration crops from the training frames "
                         "(calibration_crops(labels, 64, out_size=...)); got none")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    w, h = net.input_size
    args = (torch.zeros(1, h, w, 3, dtype=torch.uint8),)
    t0 = time.perf_counter()
    comp = dict(compression or {})
    if int8:
        from litert_torch.quantize.quant_config import QuantConfig

        body, q = _quantized_body(net, list(calibration), float_layers, calibration_method)
        deploy = _TFLiteDeploy(net, body)  # no .eval(): PT2E graph modules refuse train/eval switches
        litert_torch.convert(deploy, args, quant_config=QuantConfig(pt2e_quantizer=q)).export(os.fspath(path))
        comp["tflite_quantization"] = {"method": "litert-torch-pt2e-static", "weights": "int8 per-channel symmetric",
                                       "activations": f"int8 per-tensor ({calibration_method})",
                                       "calibration_crops": len(calibration), "float_layers": list(float_layers)}
    else:
        deploy = _TFLiteDeploy(net, net.body).eval()
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
        raise RuntimeError(f"TFLite export differs from torch by {max_px:.3f} px (> parity_tol_px="
                           f"{cfg.parity_tol_px}); the file is at {str(path)!r} for inspection")
    if score_diff > (0.15 if int8 else 1e-3):
        raise RuntimeError(f"{'int8' if int8 else 'fp32'} TFLite scores differ from torch by {score_diff:.3f} on "
                           f"average; the file is at {str(path)!r} for inspection")
    if int8 and mean_px > int8_tol_px:
        raise RuntimeError(f"int8 TFLite keypoints differ from the float model by {mean_px:.1f} px on average "
                           f"(> int8_tol_px={int8_tol_px}): calibration failed; file at {str(path)!r}")
    meta = build_metadata(net, cfg, comp)
    meta["edgepose.runtime"] = "litert"
    with zipfile.ZipFile(path, "a") as zf:  # appended after the flatbuffer; LiteRT ignores it
        zf.writestr("edgepose.json", json.dumps(meta))
    log.info("exported %s TFLite %s in %.1fs (max %.3f px, mean %.3f px vs torch)", "int8" if int8 else "fp32",
             path, seconds, max_px, mean_px)
    return TFLiteExportResult(os.fspath(path), sha256_of(path), int8, max_px, mean_px, seconds, meta)


__all__ = ["TFLiteExportResult", "export_tflite"]
