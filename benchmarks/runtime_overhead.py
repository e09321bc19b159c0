"""Runtime overhead per frame: everything except the model invoke, vs the invoke itself.

Runs MoveNet Lightning int8 (the reference edge model) through PoseEstimator in video mode on a
real clip, several passes, and reports per-frame medians of the model invoke time and of the
rest of the pipeline (crop, normalise, decode, track, smooth, result building), and their ratio.
Target (runtime-core issue): overhead <= 10 % of the invoke time.

Usage:
    python benchmarks/runtime_overhead.py --assets ../shared/assets [--model movenet-lightning-int8]
        [--threads 2] [--passes 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np


def measure(model_name: str, clip: Path, *, threads: int, passes: int, smoothing: bool = True) -> dict:
    from edgepose.estimator import EstimatorOptions, PoseEstimator
    from edgepose.video.sources import VideoFileSource

    with VideoFileSource(clip) as src:
        frames = [f.image for f in src]
    est = PoseEstimator(model_name, num_threads=threads,
                        options=EstimatorOptions(running_mode="video", smoothing=smoothing))
    infer, total, stages = [], [], {}
    ts = 0
    for p in range(passes + 1):  # pass 0 is warm-up
        est.reset()
        for img in frames:
            ts += 33
            r = est.detect_for_video(img, ts)
            if p == 0:
                continue
            infer.append(r.timings_ms["infer"])
            total.append(r.timings_ms["total"])
            for k, v in r.timings_ms.items():
                stages.setdefault(k, []).append(v)
    est.close()
    infer, total = np.array(infer), np.array(total)
    overhead = total - infer
    return {
        "model": model_name, "clip": clip.name, "frames": int(len(total)), "threads": threads,
        "smoothing": smoothing,
        "invoke_ms_p50": float(np.median(infer)), "overhead_ms_p50": float(np.median(overhead)),
        "overhead_ms_mean": float(overhead.mean()),
        "overhead_ratio_p50": float(np.median(overhead / infer)),
        "overhead_ratio_of_medians": float(np.median(overhead) / np.median(infer)),
        "stage_ms_p50": {k: float(np.median(v)) for k, v in stages.items()},
        "label": "measured", "host": platform.machine(), "python": sys.version.split()[0],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", default=os.environ.get("EDGEPOSE_ASSETS", "../shared/assets"))
    ap.add_argument("--model", default="movenet-lightning-int8")
    ap.add_argument("--clip", default="data/tfjs_testdata/pose_1.mp4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    assets = Path(a.assets)
    os.environ.setdefault("EDGEPOSE_MODEL_DIR", str(assets / "models"))
    res = measure(a.model, assets / a.clip, threads=a.threads, passes=a.passes)
    print(f"| model | frames | invoke p50 ms | overhead p50 ms | overhead / invoke |\n|---|---|---|---|---|\n"
          f"| {res['model']} | {res['frames']} | {res['invoke_ms_p50']:.3f} | {res['overhead_ms_p50']:.3f} "
          f"| {100 * res['overhead_ratio_of_medians']:.1f} % |")
    print("stage p50 ms:", {k: round(v, 3) for k, v in res["stage_ms_p50"].items()})
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
