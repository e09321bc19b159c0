"""int8 of the LiteRT export: litert-torch's PT2E static quantisation of the MoveNet body.

Per-channel symmetric int8 weights, int8 activations calibrated on training crops (never the
evaluation set), the exact input shift for MoveNet's centred input, optional float layers; the
logits stay int8 up to a float sigmoid so the decoder reads full-precision scores. Used by
:func:`edgepose.compression.export.export_tflite` (``int8=True``) and by QAT
(:mod:`~edgepose.compression.quantize.qat`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from edgepose.errors import CompressionError, ConfigError

from ..importer.movenet import MoveNetTorch

log = logging.getLogger(__name__)


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
            s = producers.get(t)
            if s is not None and s.op == "Sigmoid":
                heads[i] = s.inputs[0]
                self.sigmoid.append(i)
        self.body.head_tensors = heads

    def forward(self, x):
        return self.body(x)


class _FloatSigmoid(torch.nn.Module):
    """Quantised logit body -> float sigmoid (LOGISTIC; kept out of int8)."""

    def __init__(self, qbody, which):
        super().__init__()
        self.qbody, self.which = qbody, list(which)

    def forward(self, x):
        outs = list(self.qbody(x))
        for i in self.which:
            outs[i] = torch.sigmoid(outs[i])
        return tuple(outs)


def _exact_input_shift(net: MoveNetTorch) -> float | None:
    """The normalisation offset that makes the int8 input exact, or None when there is none.

    A uniform normalisation ``x = p * s + b`` centred on the middle of the pixel range (MoveNet:
    ``s = 1/127.5``, ``b = -1``, centre 127.5) is moved half a level to ``b = -128 s``: the
    quantised input at scale ``s``, zero point 0, is then ``p - 128`` exactly (ONNX Runtime's
    ``fold_input`` does the same). Otherwise the input gets a calibrated scale, and every pixel
    a second rounding on top of its own 8 bits."""
    sc, sh = net.scale.flatten(), net.shift.flatten()
    s0, b0 = float(sc[0]), float(sh[0])
    if not (torch.allclose(sc, sc[0]) and torch.allclose(sh, sh[0])) or s0 <= 0 or abs(b0 / s0 + 128) > 0.5 + 1e-6:
        return None
    return -128.0 * s0


def _fix_input_observer(m, scale: float) -> int:
    """Replace the observer of the prepared graph's input (reached through layout / padding ops,
    e.g. the first convolution's explicit pad) by fixed ``(scale, 0)`` int8 qparams. Returns the
    number of observers replaced."""
    from torchao.quantization.pt2e.observer import FixedQParamsObserver, ObserverBase

    passthrough = {torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default,
                   torch.ops.aten.permute.default, torch.ops.aten.view.default, torch.ops.aten.reshape.default}
    todo = [n for n in m.graph.nodes if n.op == "placeholder"]
    done = 0
    while todo:
        for u in todo.pop().users:
            if u.op == "call_module" and isinstance(getattr(m, u.target), ObserverBase):
                setattr(m, u.target, FixedQParamsObserver(scale=scale, zero_point=0, dtype=torch.qint8,
                                                          quant_min=-128, quant_max=127))
                done += 1
            elif u.op == "call_function" and u.target in passthrough:
                todo.append(u)
    return done


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


def _quantized_body(net: MoveNetTorch, calibration: list[np.ndarray], float_layers=(), calibration_method="histogram",
                    body=None, input_shift: float | None = None, exact_input: bool = False):
    """The body (``net.body`` or a variant of it, e.g. returning sparse-head stems) as a PT2E int8
    graph module calibrated on ``calibration`` crops, and its quantizer.

    The heads' Sigmoids stay float: quantised, the sigmoid heatmap came out of the converter as
    zeros (scores 0, keypoints from the regression alone). ``input_shift`` (from
    :func:`_exact_input_shift`): normalise with that offset; with ``exact_input`` also fix the
    input's qparams so that the quantised input is the pixel minus 128."""
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import quantize_pt2e

    def norm(c):
        x = net.normalise(torch.from_numpy(np.ascontiguousarray(c))[None])
        return x if input_shift is None else x - net.shift + input_shift

    logits = _LogitBody(net.body if body is None else body).eval()
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
                raise ConfigError(f"float layer {layer!r} is not a module of the body; valid: body.layers keys")
            q.set_module_name(name, off)
    m = quantize_pt2e.prepare_pt2e(m, q)
    if input_shift is not None and exact_input and _fix_input_observer(m, float(net.scale.flatten()[0])) != 1:
        raise CompressionError("exact int8 input: expected one observer on the body's input")
    with torch.no_grad():
        for c in calibration:
            m(norm(c))
    return _FloatSigmoid(quantize_pt2e.convert_pt2e(m, fold_quantize=False), logits.sigmoid), q
