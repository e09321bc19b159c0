"""Runtime overhead per frame: everything except the model invoke, vs the invoke itself.

Runs MoveNet Lightning int8 (the reference edge model) through PoseEstimator in video mode on a
real clip, several passes, frames fed as an app feeds them and from a cold list (see measure), and reports per-frame medians of the model invoke time and of the
rest of the pipeline (crop, normalise, decode, track, smooth, result building), and their ratio.
Target (runtime-core issue): overhead <= 10 % of the invoke time.

Usage (from the repository root; the assets folder from $EDGEPOSE_ASSETS or --assets):
    python benchmarks/runtime_overhead.py [--model movenet-lightning-int8] [--threads 2] [--passes 5]

Writes benchmarks/results/runtime_overhead.{json,md} (--out DIR to change the folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import add_assets_arg, add_out_arg, run_meta, use_assets, write_report


def _stats(infer, total, stages) -> dict:
    infer, total = np.array(infer), np.array(total)
    overhead = total - infer
    return {
        "frames": int(len(total)),
        "invoke_ms_p50": float(np.median(infer)), "overhead_ms_p50": float(np.median(overhead)),
        "overhead_ms_mean": float(overhead.mean()),
        "overhead_ratio_p50": float(np.median(overhead / infer)),
        "overhead_ratio_of_medians": float(np.median(overhead) / np.median(infer)),
        "stage_ms_p50": {k: float(np.median(v)) for k, v in stages.items()},
    }


def measure(model_name: str, clip: Path, *, threads: int, passes: int, smoothing: bool = True) -> dict:
    """Both frame modes, interleaved pass by pass (this host is noisy):

    * ``app``: what an application does: each frame is converted BGR -> RGB right before the
      call (``VideoFileSource`` and ``CameraSource`` do exactly this), so it is fresh in cache.
      The BGR frames are decoded up front so the video decoder's threads do not compete.
    * ``cold``: all RGB frames decoded up front (a 120 MB list for pose_1) and fed from it, so
      every frame comes from main memory: the crop's reads miss the cache (worst case).
    """
    import cv2

    from edgepose.estimator import EstimatorOptions, PoseEstimator

    cap = cv2.VideoCapture(str(clip))
    bgr = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        bgr.append(f)
    cap.release()
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr]
    est = PoseEstimator(model_name, num_threads=threads,
                        options=EstimatorOptions(running_mode="video", smoothing=smoothing))
    acc = {m: ([], [], {}) for m in ("app", "cold")}
    ts = 0
    for p in range(passes + 1):  # pass 0 is warm-up
        for mode in (("app", "cold") if p % 2 == 0 else ("cold", "app")):
            est.reset()
            infer, total, stages = acc[mode]
            for i in range(len(bgr)):
                img = cv2.cvtColor(bgr[i], cv2.COLOR_BGR2RGB) if mode == "app" else rgb[i]
                ts += 33
                r = est.detect_for_video(img, ts)
                if p == 0:
                    continue
                infer.append(r.timings_ms["infer"])
                total.append(r.timings_ms["total"])
                for k, v in r.timings_ms.items():
                    stages.setdefault(k, []).append(v)
    est.close()
    return {
        "model": model_name, "clip": clip.name, "threads": threads, "smoothing": smoothing,
        "modes": {m: _stats(*acc[m]) for m in acc},
        "label": "measured", **run_meta(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_assets_arg(ap)
    add_out_arg(ap)
    ap.add_argument("--model", default="movenet-lightning-int8")
    ap.add_argument("--clip", default="data/tfjs_testdata/pose_1.mp4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=5)
    a = ap.parse_args(argv)
    assets = use_assets(a.assets)
    res = measure(a.model, assets / a.clip, threads=a.threads, passes=a.passes)
    md = ["# Runtime overhead per frame (everything except the model invoke)", "",
          f"`python benchmarks/runtime_overhead.py --threads {a.threads} --passes {a.passes}`: {a.model}, "
          f"{a.clip}, load average {res['load_avg_1m']} at the start. Target: overhead <= 10 % of the invoke.", "",
          "| model | frames | invoke p50 ms | overhead p50 ms | overhead / invoke |", "|---|---|---|---|---|"]
    for mode, r in res["modes"].items():
        md.append(f"| {res['model']} ({mode} frames) | {r['frames']} | {r['invoke_ms_p50']:.3f} | "
                  f"{r['overhead_ms_p50']:.3f} | {100 * r['overhead_ratio_of_medians']:.1f} % |")
    md.append("")
    for mode, r in res["modes"].items():
        md.append(f"- stage p50 ms ({mode}): " + ", ".join(f"{k} {v:.3f}" for k, v in r["stage_ms_p50"].items()))
    write_report(a.out, "runtime_overhead", res, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
