"""Split inference (Neurosurgeon): pick the graph cut that minimises end-to-end latency.

For an ONNX model: per-node latency (measured with ONNX Runtime's profiler, or supplied, e.g.
from a device-profile emulation), activation sizes (ONNX shape inference), and for every cut
position the tensors crossing it. The expected latency of cutting after node i on a link is::

    edge_ms(0..i) + rtt + bytes(i) / uplink + server_ms(i+1..n) + output_bytes / downlink

with the all-cloud (send the JPEG crop) and all-edge (no network) ends as candidates. The
chosen cut is exported as two ONNX files: the head ends in ``DynamicQuantizeLinear`` (8-bit
features with scale and zero point), the tail starts with ``DequantizeLinear``; both are plain
ONNX that the embedded server (or Triton) can host. The split is checked against the unsplit
model within :data:`FLOAT_TOLERANCE` (no quantisation) and :data:`INT8_TOLERANCE`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepose._optional import require
from edgepose.errors import ConfigError, EdgePoseError
from edgepose.offload.netem import LinkSpec

log = logging.getLogger(__name__)

#: Largest |output difference| of the float split (fp32 re-association only).
FLOAT_TOLERANCE = 1e-4
#: 8-bit split, MoveNet outputs: largest |(y, x) difference| (normalised to the crop) on the
#: keypoints the unsplit model scores > 0.3: 0.02 = 4 px on a 192 px crop. Measured on
#: Lightning fp32 at three backbone cuts: <= 0.009.
INT8_XY_TOLERANCE = 0.02
#: 8-bit split: largest |keypoint score difference| (per-tensor uint8 features move the
#: heatmap peaks' heights more than their positions; measured <= 0.23).
INT8_SCORE_TOLERANCE = 0.3

_FLOAT = {1, 10, 11}  # ONNX FLOAT, FLOAT16, DOUBLE


@dataclass
class Cut:
    """One cut position.

    Attributes:
        index: cut after node ``index`` (-1: all cloud, n-1: all edge).
        tensors: names of the tensors crossing the cut.
        bytes: bytes on the wire (float tensors as 8 bits + 5 bytes scale/zero point).
    """

    index: int
    tensors: list[str]
    bytes: int


@dataclass
class SplitOption:
    """A cut with its expected latency breakdown (ms)."""

    cut: Cut
    edge_ms: float
    network_ms: float
    server_ms: float

    @property
    def total_ms(self) -> float:
        return self.edge_ms + self.network_ms + self.server_ms


@dataclass
class SplitPlan:
    """The planner's verdict for one model and link.

    Attributes:
        best: the option with the lowest expected latency.
        all_edge, all_cloud: the two ends.
        options: every candidate, in graph order.
        verdict: one sentence, saying plainly when no split beats the ends.
    """

    model: str
    link: str
    best: SplitOption
    all_edge: SplitOption
    all_cloud: SplitOption
    options: list[SplitOption] = field(default_factory=list)

    @property
    def is_split(self) -> bool:
        return self.best.cut.index not in (self.all_edge.cut.index, self.all_cloud.cut.index)

    @property
    def verdict(self) -> str:
        e, c, b = self.all_edge.total_ms, self.all_cloud.total_ms, self.best.total_ms
        if not self.is_split:
            end = "all-edge" if self.best is self.all_edge else "all-cloud"
            mid = min((o for o in self.options if o.cut.index not in (-1, self.all_edge.cut.index)),
                      key=lambda o: o.total_ms, default=None)
            extra = f"; the best split (after node {mid.cut.index}) needs {mid.total_ms:.1f} ms" if mid else ""
            return (f"no split beats {end} on {self.link}: all-edge {e:.1f} ms, all-cloud {c:.1f} ms{extra}")
        cut = self.best.cut
        return (f"split after node {cut.index} ({cut.bytes} B on the wire) is best on {self.link}: "
                f"{b:.1f} ms vs all-edge {e:.1f} ms and all-cloud {c:.1f} ms")

    def to_dict(self) -> dict:
        def o(x: SplitOption):
            return {"index": x.cut.index, "tensors": x.cut.tensors, "bytes": x.cut.bytes,
                    "edge_ms": round(x.edge_ms, 3), "network_ms": round(x.network_ms, 3),
                    "server_ms": round(x.server_ms, 3), "total_ms": round(x.total_ms, 3)}
        return {"model": self.model, "link": self.link, "verdict": self.verdict, "is_split": self.is_split,
                "best": o(self.best), "all_edge": o(self.all_edge), "all_cloud": o(self.all_cloud),
                "options": [o(x) for x in self.options]}


def _onnx():
    return require("onnx", "compress", package="onnx")


def _graph_info(model) -> tuple[dict[str, tuple[list[int], int]], set[str]]:
    onnx = _onnx()
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    info = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        tt = v.type.tensor_type
        info[v.name] = ([d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim], tt.elem_type)
    const = {i.name for i in g.initializer}
    const |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    return info, const


def _tensor_bytes(name: str, info) -> int | None:
    if name not in info:
        return None
    shape, et = info[name]
    if any(d < 0 for d in shape):
        return None
    n = math.prod(shape)
    if et in _FLOAT:
        return n + 5  # uint8 data + fp32 scale + uint8 zero point
    onnx = _onnx()
    return n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(et)).itemsize


def candidate_cuts(model_path: str | os.PathLike, *, max_tensors: int = 4) -> list[Cut]:
    """Every cut position whose crossing tensors have static shapes and number <= ``max_tensors``.

    Index -1 (the graph inputs: all cloud) and n-1 (the graph outputs: all edge) are included.
    """
    onnx = _onnx()
    model = onnx.load(os.fspath(model_path))
    g = model.graph
    info, const = _graph_info(model)
    n = len(g.node)
    last_use: dict[str, int] = {}
    for i, node in enumerate(g.node):
        for t in node.input:
            if t:
                last_use[t] = i
    for o in g.output:
        last_use[o.name] = n
    inputs = [i.name for i in g.input if i.name not in const]
    live = {t for t in inputs if last_use.get(t, -1) > -1}
    # All cloud sends the image: one byte per element (an 8-bit image), whatever the graph's input dtype.
    cuts = [Cut(-1, inputs, sum(math.prod(max(d, 1) for d in info[t][0]) for t in inputs if t in info))]
    for i, node in enumerate(g.node):
        for t in node.output:
            if t and t not in const and last_use.get(t, -1) > i:
                live.add(t)
        live = {t for t in live if last_use.get(t, -1) > i}
        if i == n - 1:
            outs = [o.name for o in g.output]
            cuts.append(Cut(i, outs, sum(_tensor_bytes(t, info) or 0 for t in outs)))
            break
        if not live or len(live) > max_tensors:
            continue
        sizes = [_tensor_bytes(t, info) for t in live]
        if None in sizes:
            continue
        cuts.append(Cut(i, sorted(live), int(sum(sizes))))
    return cuts


@dataclass
class LayerProfile:
    """Per-node latency in graph order, scaled so the nodes sum to the optimised session's time."""

    names: list[str]
    ms: np.ndarray
    total_ms: float


def profile_layers(model_path: str | os.PathLike, *, runs: int = 20, num_threads: int = 1,
                   feeds: dict[str, np.ndarray] | None = None) -> LayerProfile:
    """Measure per-node latency with ONNX Runtime's profiler.

    Node times come from an unoptimised session (so every ONNX node is timed by name); they are
    scaled to the median wall time of the normal, optimised session: the shares are measured,
    the total is what the device really pays.
    """
    ort = require("onnxruntime", "base")
    onnx = _onnx()
    path = os.fspath(model_path)
    model = onnx.load(path)
    names = [n.name for n in model.graph.node]
    if len(set(names)) != len(names) or not all(names):
        raise EdgePoseError(f"{path!r} has unnamed or duplicate node names; name them before profiling")
    base = ort.SessionOptions()
    base.intra_op_num_threads = num_threads
    base.log_severity_level = 3
    sess = ort.InferenceSession(path, sess_options=base, providers=["CPUExecutionProvider"])
    feeds = feeds or {i.name: _random_input(i) for i in sess.get_inputs()}
    for _ in range(3):
        sess.run(None, feeds)
    wall = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        wall.append((time.perf_counter() - t0) * 1e3)
    del sess
    with tempfile.TemporaryDirectory() as tmp:
        po = ort.SessionOptions()
        po.intra_op_num_threads = num_threads
        po.log_severity_level = 3
        po.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        po.enable_profiling = True
        po.profile_file_prefix = os.path.join(tmp, "prof")
        psess = ort.InferenceSession(path, sess_options=po, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            psess.run(None, feeds)
        events = json.loads(Path(psess.end_profiling()).read_text())
    per: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            nm = e["name"][: -len("_kernel_time")]
            per[nm] = per.get(nm, 0.0) + e["dur"] / 1e3
    raw = np.array([per.get(n, 0.0) for n in names]) / runs
    total = statistics.median(wall)
    scale = total / raw.sum() if raw.sum() > 0 else 0.0
    return LayerProfile(names, raw * scale, total)


def _random_input(i) -> np.ndarray:
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
    rng = np.random.default_rng(0)
    if "int" in i.type:
        return rng.integers(0, 256, shape).astype(np.int32 if "int32" in i.type else np.int64)
    return rng.random(shape, dtype=np.float32)


def plan_split(model_path: str | os.PathLike, link: LinkSpec, *, edge_ms: np.ndarray | LayerProfile | None = None,
               edge_slowdown: float = 1.0, server_speedup: float = 1.0, cloud_input_bytes: int | None = None,
               max_tensors: int = 4) -> SplitPlan:
    """Choose the cut minimising expected end-to-end latency on ``link``.

    Args:
        model_path: the ONNX model.
        link: the network link (uplink/downlink rates, RTT).
        edge_ms: per-node edge latency in graph order (default: :func:`profile_layers` here).
        edge_slowdown: the device is this many times slower than ``edge_ms`` (1: as measured).
        server_speedup: the server runs nodes this many times faster than ``edge_ms``.
        cloud_input_bytes: bytes sent for all-cloud (e.g. a JPEG crop; default: the raw input
            at one byte per element).
    """
    if not edge_slowdown > 0 or not server_speedup > 0:
        raise ConfigError(f"plan_split: edge_slowdown and server_speedup must be > 0, got "
                         f"{edge_slowdown!r} / {server_speedup!r}")
    if edge_ms is None:
        edge_ms = profile_layers(model_path)
    node_ms = np.asarray(edge_ms.ms if isinstance(edge_ms, LayerProfile) else edge_ms, dtype=np.float64)
    cuts = candidate_cuts(model_path, max_tensors=max_tensors)
    n = cuts[-1].index + 1
    if len(node_ms) != n:
        raise ConfigError(f"plan_split: edge_ms has {len(node_ms)} entries, the graph has {n} nodes")
    prefix = np.concatenate([[0.0], np.cumsum(node_ms)])
    out_bytes = cuts[-1].bytes
    opts = []
    for c in cuts:
        head = prefix[c.index + 1] * edge_slowdown
        if c.index == n - 1:
            opts.append(SplitOption(c, head, 0.0, 0.0))
            continue
        up = cloud_input_bytes if (c.index == -1 and cloud_input_bytes is not None) else c.bytes
        net = link.rtt_ms + link.transfer_ms(up) + link.transfer_ms(out_bytes + 300, up=False)
        opts.append(SplitOption(c, head, net, (prefix[n] - prefix[c.index + 1]) / server_speedup))
    if not link.available:
        opts = [opts[-1]]
    best = min(opts, key=lambda o: o.total_ms)
    return SplitPlan(os.path.basename(os.fspath(model_path)), link.name, best, opts[-1], opts[0], opts)


def export_split(model_path: str | os.PathLike, cut: Cut, out_dir: str | os.PathLike, *,
                 quantize: bool = True) -> tuple[Path, Path, dict]:
    """Write ``head.onnx`` and ``tail.onnx`` for ``cut`` (+ ``split.json``, the wire manifest).

    With ``quantize``, each float tensor crossing the cut travels as ``feature{j}_q`` (uint8),
    ``feature{j}_scale`` (fp32) and ``feature{j}_zero_point`` (uint8); others travel as
    ``feature{j}``.

    Returns:
        ``(head_path, tail_path, manifest)``.
    """
    onnx = _onnx()
    from onnx import helper

    src = os.fspath(model_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = onnx.load(src)
    info, _ = _graph_info(model)
    g_in = [i.name for i in model.graph.input]
    g_out = [o.name for o in model.graph.output]
    head_p, tail_p = out / "head.onnx", out / "tail.onnx"
    onnx.utils.extract_model(src, os.fspath(head_p), g_in, cut.tensors)
    onnx.utils.extract_model(src, os.fspath(tail_p), cut.tensors, g_out)
    head, tail = onnx.load(os.fspath(head_p)), onnx.load(os.fspath(tail_p))
    wire = []
    for j, t in enumerate(cut.tensors):
        shape, et = info[t]
        if quantize and et in _FLOAT:
            q, s, z = f"feature{j}_q", f"feature{j}_scale", f"feature{j}_zero_point"
            src_t = t
            if et != 1:
                head.graph.node.append(helper.make_node("Cast", [t], [f"{t}__f32"], to=1))
                src_t = f"{t}__f32"
            head.graph.node.append(helper.make_node("DynamicQuantizeLinear", [src_t], [q, s, z], name=f"edgepose_q{j}"))
            head.graph.output.extend([helper.make_tensor_value_info(q, 2, shape),
                                      helper.make_tensor_value_info(s, 1, []),
                                      helper.make_tensor_value_info(z, 2, [])])
            _replace_input(tail.graph, t, [helper.make_tensor_value_info(q, 2, shape),
                                           helper.make_tensor_value_info(s, 1, []),
                                           helper.make_tensor_value_info(z, 2, [])])
            deq = f"{t}__deq" if et != 1 else t
            nodes = [helper.make_node("DequantizeLinear", [q, s, z], [deq], name=f"edgepose_dq{j}")]
            if et != 1:
                nodes.append(helper.make_node("Cast", [deq], [t], to=et))
            for k, nd in enumerate(nodes):
                tail.graph.node.insert(k, nd)
            wire.append({"tensor": t, "wire": [q, s, z], "shape": shape, "quantized": True})
        else:
            name = f"feature{j}"
            _rename_output(head.graph, t, name)
            _replace_input(tail.graph, t, [helper.make_tensor_value_info(name, et, shape)])
            tail.graph.node.insert(0, helper.make_node("Identity", [name], [t], name=f"edgepose_in{j}"))
            wire.append({"tensor": t, "wire": [name], "shape": shape, "quantized": False})
    keep = {w for item in wire for w in item["wire"]}
    for o in list(head.graph.output):
        if o.name not in keep:
            head.graph.output.remove(o)
    for m in (head, tail):
        onnx.checker.check_model(m)
    onnx.save(head, os.fspath(head_p))
    onnx.save(tail, os.fspath(tail_p))
    manifest = {"source": os.path.basename(src), "cut_index": cut.index, "bytes": cut.bytes, "features": wire,
                "outputs": g_out}
    (out / "split.json").write_text(json.dumps(manifest, indent=1))
    return head_p, tail_p, manifest


def _replace_input(graph, name: str, new) -> None:
    for i, v in enumerate(graph.input):
        if v.name == name:
            graph.input.remove(v)
            for k, nv in enumerate(new):
                graph.input.insert(i + k, nv)
            return
    raise EdgePoseError(f"tail graph has no input {name!r}")


def _rename_output(graph, old: str, new: str) -> None:
    from onnx import helper

    graph.node.append(helper.make_node("Identity", [old], [new], name=f"edgepose_out_{new}"))
    for v in graph.output:
        if v.name == old:
            graph.output.append(helper.make_tensor_value_info(new, v.type.tensor_type.elem_type,
                                                              [d.dim_value for d in v.type.tensor_type.shape.dim]))
            return


def run_split(head, tail, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run head then tail (two OrtBackends or anything with ``run``); returns the tail outputs."""
    mid = head.run(feeds)
    return tail.run({k: v for k, v in mid.items()})


def compare_split(model_path, head_path, tail_path, feeds_list: list[dict[str, np.ndarray]]
                  ) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """(unsplit outputs, split outputs) for each feed dict."""
    from edgepose.backends.ort import OrtBackend

    pairs = []
    with OrtBackend(model_path, num_threads=1) as full, OrtBackend(head_path, num_threads=1) as h, \
            OrtBackend(tail_path, num_threads=1) as t:
        for feeds in feeds_list:
            pairs.append((full.run(feeds), run_split(h, t, feeds)))
    return pairs


def verify_split(model_path, head_path, tail_path, feeds_list: list[dict[str, np.ndarray]]) -> float:
    """Largest |output difference| between the unsplit model and head -> tail over ``feeds_list``."""
    return max(float(np.abs(np.asarray(got[k], np.float64) - v).max())
               for ref, got in compare_split(model_path, head_path, tail_path, feeds_list) for k, v in ref.items())


def keypoint_split_error(ref: np.ndarray, got: np.ndarray, *, min_score: float = 0.3) -> tuple[float, float]:
    """MoveNet ``[1,1,17,3]`` outputs: (max |y,x diff| on confident keypoints, max |score diff|)."""
    r, g = np.asarray(ref).reshape(-1, 3), np.asarray(got).reshape(-1, 3)
    conf = r[:, 2] > min_score
    xy = float(np.abs(g[conf, :2] - r[conf, :2]).max()) if conf.any() else 0.0
    return xy, float(np.abs(g[:, 2] - r[:, 2]).max())
