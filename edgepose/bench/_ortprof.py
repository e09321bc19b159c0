"""Per-op host times from onnxruntime's profiler, with MACs and bytes of the ops that ran.

ORT fuses and re-lays-out the graph (Conv+Clip -> one NCHWc Conv, reorder nodes...), so the
profiled ops do not match the ONNX file's nodes by name. Their MACs and bytes are computed from
the shapes and types the profiler records for each kernel call instead: the work of exactly
the kernels that ran.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import defaultdict

import numpy as np

from edgepose._optional import require
from edgepose.bench.emulator import OpSample

log = logging.getLogger(__name__)

_BYTES = {"float": 4, "float16": 2, "double": 8, "int32": 4, "int64": 8, "uint8": 1, "int8": 1,
          "bool": 1, "int16": 2, "uint16": 2}
_CONV = ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcFusedConv", "NhwcConv",
         "QLinearConvTranspose", "ConvTranspose")
_MATMUL = ("MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "QLinearMatMul", "FusedGemm")


def _shapes(entries) -> list[tuple[str, list[int]]]:
    out = []
    for e in entries or []:
        for dtype, dims in e.items():
            out.append((dtype, [int(d) for d in dims]))
    return out


def op_work(op: str, inputs, outputs) -> tuple[int, int, str]:
    """(MACs, bytes, precision) of one profiled kernel call from its recorded shapes."""
    ins, outs = _shapes(inputs), _shapes(outputs)
    nbytes = sum(int(np.prod(d)) * _BYTES.get(t, 4) for t, d in ins + outs if d)
    macs = 0
    out_e = int(np.prod(outs[0][1])) if outs and outs[0][1] else 0
    if op in _CONV and len(ins) >= 2:
        w = ins[3][1] if op.startswith("QLinear") and len(ins) > 3 else ins[1][1]
        if len(w) >= 3:
            macs = (int(np.prod(ins[0][1])) * w[1] * int(np.prod(w[2:])) if "Transpose" in op
                    else out_e * int(np.prod(w[1:])))
    elif op in _MATMUL and ins and ins[0][1]:
        macs = out_e * ins[0][1][-1]
    prec = "int8" if ins and _BYTES.get(ins[0][0], 4) == 1 and macs else "fp32"
    return macs, nbytes, prec


def profile_ort(model_path: str, feeds: dict[str, np.ndarray], *, threads: int, runs: int = 10,
                providers=None) -> tuple[list[OpSample], float]:
    """Run ``model_path`` ``runs`` times with profiling on (spinning off).

    Returns:
        ``(ops, wall_ms)``: per-op samples whose ``host_ms`` is that op's *fastest* time over the
        runs, and the fastest run's wall time. Best-of-N, like the host peaks of
        :mod:`edgepose.bench.hostprobe`, so that both sides of the emulator's ratio are the
        least-disturbed figures on a shared machine.
    """
    ort = require("onnxruntime", "base")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="edgepose-ortprof-") as tmp:
        opts.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(model_path, sess_options=opts,
                                    providers=providers or ["CPUExecutionProvider"])
        for _ in range(3):  # warm-up: the first run is dropped below, the rest only warm caches
            sess.run(None, feeds)
        for _ in range(runs):
            sess.run(None, feeds)
        path = sess.end_profiling()
        with open(path) as fh:
            events = json.load(fh)
    runs_ev = [e for e in events if e.get("name") == "model_run"]
    keep = runs_ev[3:] if len(runs_ev) > 3 else runs_ev  # drop the warm-up runs
    t0 = min(e["ts"] for e in keep)
    wall_ms = min(e["dur"] for e in keep) / 1e3
    acc: dict[str, list] = defaultdict(lambda: [None, float("inf")])
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < t0:
            continue
        a = e.get("args", {})
        key = e["name"][: -len("_kernel_time")]
        if acc[key][0] is None:
            acc[key][0] = (a.get("op_name", "?"),) + op_work(a.get("op_name", ""),
                                                           a.get("input_type_shape"),
                                                           a.get("output_type_shape"))
        acc[key][1] = min(acc[key][1], e["dur"] / 1e3)
    samples = [OpSample(name, info[0], info[1], info[2], info[3], host_ms=ms)
               for name, (info, ms) in acc.items()]
    log.info("ORT profile of %s: %d ops, %.2f ms/run wall, %.2f ms/run in kernels",
             model_path, len(samples), wall_ms, sum(s.host_ms for s in samples))
    return samples, wall_ms
