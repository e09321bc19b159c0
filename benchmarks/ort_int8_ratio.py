"""Quick check of the issue-4 int8 target: fp32 vs int8 Lightning on ONNX Runtime, interleaved.

Each round runs both models (order alternating) ``per_round`` times and takes the ratio of the
two medians; the report is the median over rounds (q25-q75), at 1 and 2 threads, spinning off.
A lighter companion of ``benchmarks/ort_int8_speed.py`` (which also profiles and evaluates).

    python benchmarks/ort_int8_ratio.py --int8 runs/compress_variants_s3/lightning_ort_int8.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ASSETS = Path(os.environ.get("EDGEPOSE_ASSETS", "../shared/assets"))


def session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    dtype = np.int32 if "int32" in inp.type else np.uint8
    return s, inp.name, dtype


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fp32", default=str(ASSETS / "models/movenet/movenet_lightning_fp32.onnx"))
    p.add_argument("--int8", required=True, help="the quantised model (edgepose's quantize)")
    p.add_argument("--rounds", type=int, default=150)
    p.add_argument("--per-round", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/ort_int8_ratio.json")
    a = p.parse_args(argv)
    x = np.random.default_rng(0).integers(0, 256, (1, 192, 192, 3))
    load0 = os.getloadavg()[0]
    report = {"fp32": a.fp32, "int8": a.int8, "rounds": a.rounds, "per_round": a.per_round,
              "load_before": round(load0, 2), "machine": platform.processor() or platform.machine(), "threads": {}}
    for th in (1, 2):
        sess = {k: session(path, th) for k, path in (("fp32", a.fp32), ("int8", a.int8))}
        feeds = {k: {name: x.astype(dt)} for k, (_, name, dt) in sess.items()}
        for k, (s, _, _) in sess.items():
            for _ in range(20):
                s.run(None, feeds[k])
        ratios, med = [], {"fp32": [], "int8": []}
        for r in range(a.rounds):
            t = {}
            for k in (("fp32", "int8") if r % 2 == 0 else ("int8", "fp32")):
                ts = []
                for _ in range(a.per_round):
                    t0 = time.perf_counter()
                    sess[k][0].run(None, feeds[k])
                    ts.append(time.perf_counter() - t0)
                t[k] = float(np.median(ts))
                med[k].append(t[k])
            ratios.append(t["fp32"] / t["int8"])
        q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
        report["threads"][th] = {"fp32_ms": round(1e3 * float(np.median(med["fp32"])), 3),
                                 "int8_ms": round(1e3 * float(np.median(med["int8"])), 3),
                                 "ratio_median": round(float(q50), 3), "ratio_q25": round(float(q25), 3),
                                 "ratio_q75": round(float(q75), 3)}
        print(f"{th} thread(s): fp32 {report['threads'][th]['fp32_ms']:.2f} ms, int8 "
              f"{report['threads'][th]['int8_ms']:.2f} ms, fp32/int8 {q50:.2f}x ({q25:.2f}-{q75:.2f})")
    report["load_after"] = round(os.getloadavg()[0], 2)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
