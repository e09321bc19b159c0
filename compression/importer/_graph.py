"""Turn the convolutional body of an ONNX graph into a trainable torch module.

The ONNX files in ``$EDGEPOSE_ASSETS`` were converted from tfjs graphs: NHWC int32 input, a cast,
an elementwise normalisation, one ``Transpose`` to NCHW, then the network (Conv with folded BN,
Clip = ReLU6, Relu, Add, Resize, Concat, Sigmoid), then ``Transpose`` back to NHWC and the
post-processing (ArgMax, GatherND, ...). This module walks that graph with the ``onnx`` package:

* the **preprocess** chain (Cast, Split, Sub / Mul / Add / Div by constants, Transpose) becomes a
  per-channel affine ``x * scale + shift`` applied to the 0-255 RGB input;
* the **body** (the supported NCHW ops reachable from the transpose) becomes
  :class:`OnnxBody`, whose convolutions are real ``nn.Conv2d`` modules (so Torch-Pruning can see
  and remove their channels);
* the body tensors that anything outside the body reads are the **raw head outputs**.

Everything after the heads stays out of torch: a model card's numpy decoder reproduces it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

#: ONNX ops the body may contain (all NCHW, channel-preserving or channel-mixing convolutions).
BODY_OPS = ("Conv", "Clip", "Relu", "Sigmoid", "Add", "Mul", "Resize", "Concat",
            "BatchNormalization", "MaxPool", "AveragePool", "HardSigmoid", "HardSwish")
#: Elementwise preprocessing ops folded into the input affine.
_PRE_OPS = ("Cast", "Split", "Sub", "Mul", "Add", "Div", "Identity")


@dataclass
class _Step:
    """One body op: kind, input tensor names, output name and its constant parameters."""

    op: str
    inputs: list[str]
    output: str
    module: str | None = None
    params: dict = field(default_factory=dict)


def _attrs(node) -> dict:
    import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _initializers(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
    return consts


def _hint(name: str) -> str:
    """A short readable module-name hint from a tfjs tensor name."""
    parts = [p for p in name.split("/") if p and not p.startswith("StatefulPartitionedCall")]
    keep = parts[-2] if len(parts) >= 2 else (parts[0] if parts else "t")
    return re.sub(r"[^0-9a-zA-Z_]", "_", keep)[:40]


class OnnxBody(nn.Module):
    """The imported network body: a list of steps over named tensors, convolutions as modules.

    ``forward(x)`` takes the normalised NCHW float input and returns a tuple with one tensor per
    head output (order given by :attr:`head_names`).
    """

    def __init__(self, steps: list[_Step], convs: dict[str, nn.Module], input_name: str,
                 head_tensors: list[str], head_names: list[str]):
        super().__init__()
        self.steps = steps
        self.layers = nn.ModuleDict(convs)
        self.input_name = input_name
        self.head_tensors = list(head_tensors)
        self.head_names = list(head_names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env = {self.input_name: x}
        for s in self.steps:
            a = env[s.inputs[0]]
            if s.op == "Conv":
                if s.params.get("pad") is not None:
                    a = F.pad(a, s.params["pad"])
                y = self.layers[s.module](a)
            elif s.op == "BatchNormalization":
                y = self.layers[s.module](a)
            elif s.op == "Clip":
                lo, hi = s.params["min"], s.params["max"]
                y = F.relu6(a) if (lo, hi) == (0.0, 6.0) else torch.clamp(a, lo, hi)
            elif s.op == "Relu":
                y = F.relu(a)
            elif s.op == "Sigmoid":
                y = torch.sigmoid(a)
            elif s.op == "HardSigmoid":
                y = torch.clamp(a * s.params["alpha"] + s.params["beta"], 0.0, 1.0)
            elif s.op == "HardSwish":
                y = F.hardswish(a)
            elif s.op in ("Add", "Mul"):
                b = env[s.inputs[1]] if len(s.inputs) > 1 else s.params["const"]
                y = a + b if s.op == "Add" else a * b
            elif s.op == "Resize":
                y = F.interpolate(a, scale_factor=s.params.get("scale"), size=s.params.get("size"),
                                  mode=s.params["mode"],
                                  align_corners=False if s.params["mode"] == "bilinear" else None)
            elif s.op == "Concat":
                y = torch.cat([env[n] for n in s.inputs], dim=s.params["axis"])
            elif s.op == "MaxPool":
                y = F.max_pool2d(F.pad(a, s.params["pad"], value=float("-inf")), s.params["k"],
                                 s.params["stride"])
            elif s.op == "AveragePool":
                y = F.avg_pool2d(F.pad(a, s.params["pad"]), s.params["k"], s.params["stride"])
            else:  # pragma: no cover - _build_steps only emits the ops above
                raise NotImplementedError(s.op)
            env[s.output] = y
        return tuple(env[n] for n in self.head_tensors)


def _pads(attrs: dict, rank: int = 2) -> tuple[int, int, int, int] | None:
    """ONNX [top, left, bottom, right] pads -> F.pad (left, right, top, bottom), None when zero."""
    p = list(attrs.get("pads", [0] * 2 * rank))
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ConfigError(f"auto_pad={attrs['auto_pad']!r} is not supported by the ONNX importer; "
                         "re-export the model with explicit pads")
    if not any(p):
        return None
    return (p[1], p[3], p[0], p[2])


def _conv_module(node, attrs, consts, restore_bn: bool) -> tuple[nn.Module, tuple | None]:
    w = consts[node.input[1]].astype(np.float32)
    b = consts[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else None
    groups = int(attrs.get("group", 1))
    out_c, in_per_group, kh, kw = w.shape
    pad = _pads(attrs)
    sym = pad is not None and pad[0] == pad[1] == pad[2] == pad[3]
    conv = nn.Conv2d(in_per_group * groups, out_c, (kh, kw), stride=tuple(attrs.get("strides", (1, 1))),
                     padding=pad[0] if sym else 0, dilation=tuple(attrs.get("dilations", (1, 1))),
                     groups=groups, bias=b is not None or restore_bn)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        if b is not None:
            conv.bias.copy_(torch.from_numpy(b))
        elif conv.bias is not None:
            conv.bias.zero_()
    if restore_bn:
        conv = _with_identity_bn(conv)
    return conv, (None if sym else pad)


def _with_identity_bn(conv: nn.Conv2d) -> nn.Module:
    """Conv followed by a BatchNorm2d that is exactly the identity in eval mode.

    The converter folded BN into the conv; training a deep net without BN is harder, so this
    restores one with statistics (mean = bias, var = 1 - eps) and affine (gamma = 1, beta = bias)
    chosen so that conv + BN computes the same function as the folded conv.
    """
    bn = nn.BatchNorm2d(conv.out_channels)
    with torch.no_grad():
        bias = conv.bias.detach().clone()
        conv.bias.zero_()
        bn.weight.fill_(1.0)
        bn.bias.copy_(bias)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    return nn.Sequential(conv, bn)


def preprocess_affine(graph, consts, start: str, stop: str) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate the elementwise chain from the graph input to the NCHW transpose as an affine.

    Returns per-channel ``(scale, shift)`` (3,) so that ``normalised = rgb * scale + shift``.
    """
    producers = {o: n for n in graph.node for o in n.output}
    chain, t = [], stop
    while t != start:
        node = producers.get(t)
        if node is None or node.op_type not in _PRE_OPS:
            raise ConfigError(f"unsupported preprocessing op {getattr(node, 'op_type', None)!r} "
                             f"before the NCHW transpose (supported: {', '.join(_PRE_OPS)})")
        chain.append(node)
        t = node.input[0]

    def run(x):
        env = {start: x}
        for node in reversed(chain):
            a = env[node.input[0]]
            if node.op_type in ("Cast", "Split", "Identity"):
                y = a
            else:
                other = consts.get(node.input[1])
                if other is None:
                    raise ConfigError(f"preprocessing op {node.name!r} has a non-constant operand; "
                                     "only constant elementwise normalisation can be folded")
                other = other.astype(np.float64).reshape(-1)[-3:] if other.size > 1 else float(other)
                y = {"Sub": np.subtract, "Mul": np.multiply, "Add": np.add,
                     "Div": np.divide}[node.op_type](a, other)
            env[node.output[0]] = y
        return env[chain[0].output[0]] if chain else x

    zero = run(np.zeros(3))
    one = run(np.ones(3))
    return (np.asarray(one - zero, np.float32), np.asarray(zero, np.float32))


def build_body(model, *, restore_bn: bool = False) -> tuple[OnnxBody, dict]:
    """Build the torch body from an ``onnx.ModelProto``.

    Returns:
        ``(body, info)``; info has ``input_size`` (w, h), ``scale``/``shift`` (preprocess affine),
        ``consts`` (all constants, for decoders), ``producers`` and the graph.
    """
    graph = model.graph
    consts = _initializers(graph)
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise ConfigError(f"the ONNX importer needs exactly one image input, found {len(inputs)}: "
                         f"{[i.name for i in inputs]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[3] != 3:
        raise ConfigError(f"input {inputs[0].name!r} has shape {dims}; expected NHWC [1, H, W, 3]")
    transposes = [n for n in graph.node if n.op_type == "Transpose"
                  and list(_attrs(n).get("perm", [])) == [0, 3, 1, 2]]
    if not transposes:
        raise ConfigError("no NHWC->NCHW Transpose found after the input; the importer expects a "
                         "tfjs/tf2onnx-style graph")
    entry = transposes[0]
    scale, shift = preprocess_affine(graph, consts, inputs[0].name, entry.input[0])

    steps, convs, known = [], {}, {entry.output[0]}
    for node in graph.node:
        if node.op_type not in BODY_OPS:
            continue
        data_in = [i for i in node.input if i and i not in consts]
        if not data_in or not all(i in known for i in data_in):
            continue
        attrs = _attrs(node)
        out = node.output[0]
        step = _Step(node.op_type, data_in, out)
        if node.op_type == "Conv":
            name = f"c{len(convs):02d}_{_hint(out if '/' in out else node.name)}"
            convs[name], pad = _conv_module(node, attrs, consts, restore_bn)
            step.module, step.params["pad"] = name, pad
        elif node.op_type == "BatchNormalization":
            sc, b, mean, var = (consts[n].astype(np.float32) for n in node.input[1:5])
            bn = nn.BatchNorm2d(len(sc), eps=float(attrs.get("epsilon", 1e-5)))
            with torch.no_grad():
                for p, v in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), (sc, b, mean, var)):
                    p.copy_(torch.from_numpy(v))
            name = f"b{len(convs):02d}_{_hint(out)}"
            convs[name], step.module = bn, name
        elif node.op_type == "Clip":
            lo = float(consts[node.input[1]]) if len(node.input) > 1 and node.input[1] else float(attrs.get("min", -np.inf))
            hi = float(consts[node.input[2]]) if len(node.input) > 2 and node.input[2] else float(attrs.get("max", np.inf))
            step.params.update(min=lo, max=hi)
        elif node.op_type in ("Add", "Mul") and len(data_in) == 1:
            c = next(consts[i] for i in node.input if i in consts)
            step.params["const"] = torch.tensor(np.asarray(c, np.float32))
        elif node.op_type == "Resize":
            mode = attrs.get("mode", "nearest")
            if mode not in ("linear", "nearest"):
                raise ConfigError(f"Resize mode {mode!r} is not supported (supported: linear, nearest)")
            if mode == "linear" and attrs.get("coordinate_transformation_mode") not in ("half_pixel", "pytorch_half_pixel"):
                raise ConfigError("linear Resize must use half_pixel coordinates to match torch; got "
                                 f"{attrs.get('coordinate_transformation_mode')!r}")
            scales = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            sizes = consts.get(node.input[3]) if len(node.input) > 3 else None
            if scales is not None and scales.size == 4:
                step.params["scale"] = (float(scales[2]), float(scales[3]))
            elif sizes is not None:
                step.params["size"] = (int(sizes[2]), int(sizes[3]))
            else:
                raise ConfigError(f"Resize {node.name!r} needs constant scales or sizes")
            step.params["mode"] = "bilinear" if mode == "linear" else "nearest"
        elif node.op_type == "Concat":
            step.params["axis"] = int(attrs["axis"])
        elif node.op_type in ("MaxPool", "AveragePool"):
            step.params.update(k=tuple(attrs["kernel_shape"]), stride=tuple(attrs.get("strides", (1, 1))),
                               pad=_pads(attrs) or (0, 0, 0, 0))
        elif node.op_type == "HardSigmoid":
            step.params.update(alpha=float(attrs.get("alpha", 0.2)), beta=float(attrs.get("beta", 0.5)))
        steps.append(step)
        known.add(out)

    body_outputs = {s.output for s in steps}
    consumers_outside = []
    for node in graph.node:
        if any(s.output == node.output[0] for s in steps):
            continue
        consumers_outside.extend(i for i in node.input if i in body_outputs)
    consumers_outside.extend(o.name for o in graph.output if o.name in body_outputs)
    heads = list(dict.fromkeys(consumers_outside))
    if not heads:
        raise ConfigError("the importer found no head outputs (no body tensor is read outside the body)")
    body = OnnxBody(steps, convs, entry.output[0], heads, heads)
    info = dict(input_size=(dims[2], dims[1]), scale=scale, shift=shift, consts=consts,
                producers={o: n for n in graph.node for o in n.output}, graph=graph)
    log.info("imported %d body ops (%d conv), %d head outputs", len(steps), len(convs), len(heads))
    return body, info
