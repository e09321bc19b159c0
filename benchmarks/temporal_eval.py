"""Temporal quality (issue 7): learned smoother vs One Euro, keyframes + recovery vs linear.

Runs the per-frame edge model (MoveNet Lightning int8) in video mode on the evaluation clips
(pose_1, pose_squats, body3d_demo 299-398), post-processes its track with every method and
scores it against the clip's reference (``edgepose.eval.temporal_report``); then times the
temporal models alone per frame (warm-up, then p50 / p90 / p99 over every frame of the clips).

Also reports ``one-euro oracle``: the One Euro parameters that minimise the acceleration error
on each evaluation clip itself among those adding <= 0.5 px of position error, i.e. a baseline
tuned on the test data (an upper bound for it, not a deployable setting).

Usage:
    python benchmarks/temporal_eval.py --assets ../shared/assets --out runs/temporal_eval
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def oracle_one_euro(name: str, cache_dir: str, assets: Path) -> dict:
    from edgepose.eval.jitter import temporal_metrics
    from edgepose.eval.temporal import EVAL_CLIPS, cached_model_track, reference_track
    from edgepose.eval.temporal_report import one_euro_track
    from edgepose.video.one_euro import OneEuroConfig

    clip = EVAL_CLIPS[name]
    ref = reference_track(clip, assets=assets, cache_dir=cache_dir).astype(np.float64)
    raw = cached_model_track(cache_dir, "movenet-lightning-int8", assets / clip.video,
                             start=clip.start, stop=clip.stop)
    base = temporal_metrics(raw.keypoints, ref, raw.fps).position_error
    best = None
    for mc, beta in itertools.product((0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 8, 12, 20),
                                      (0, 0.1, 0.3, 1, 3, 10, 20, 50, 100)):
        m = temporal_metrics(one_euro_track(raw.keypoints, raw.fps, OneEuroConfig(mc, beta)), ref, raw.fps)
        if m.position_error <= base + 0.5 and (best is None or m.accel_error < best[0].accel_error):
            best = (m, mc, beta)
    m, mc, beta = best
    return {"clip": name, "method": f"one-euro oracle ({mc:g} Hz, beta {beta:g})", "delay_frames": 0,
            **m.to_dict(), "ms_per_frame": None}


def latency(n_frames: int = 300, repeats: int = 3) -> dict:
    """Per-frame wall time of the temporal models alone (synthetic poses; the cost does not
    depend on the values)."""
    from edgepose.video.keyframes import KeyframeOptions, KeyframeRecovery
    from edgepose.video.smoother import LearnedSmoother, SmootherOptions

    rng = np.random.default_rng(0)
    poses = 200 + np.cumsum(rng.normal(0, 2, size=(n_frames, 17, 2)), axis=0)
    out = {}
    with LearnedSmoother(SmootherOptions(delay=0)) as sm:
        ms = []
        for r in range(repeats + 1):
            sm.reset()
            for i, p in enumerate(poses):
                t0 = time.perf_counter()
                sm.push(p, 33 * i)
                if r:
                    ms.append((time.perf_counter() - t0) * 1e3)
        out["smoother_push"] = ms
    for k in (3, 5):
        with KeyframeRecovery(KeyframeOptions(interval=k)) as rec:
            ms = []
            for r in range(repeats + 1):
                rec.reset()
                for i, p in enumerate(poses):
                    key = rec.is_keyframe()
                    t0 = time.perf_counter()
                    rec.push(p if key else None, 33 * i)
                    if r:
                        ms.append((time.perf_counter() - t0) * 1e3)
            out[f"recovery_k{k}_push"] = ms
    return {k: {"mean": float(np.mean(v)), "p50": float(np.percentile(v, 50)),
                "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)), "n": len(v)}
            for k, v in out.items()}


def main(argv=None) -> int:
    from edgepose.eval.temporal_report import TemporalEvalOptions, evaluate_temporal, format_table
    from edgepose.version import __version__

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--assets", default=os.environ.get("EDGEPOSE_ASSETS", "../shared/assets"))
    p.add_argument("--out", default="runs/temporal_eval")
    p.add_argument("--cache-dir", default="runs/temporal_tracks")
    p.add_argument("--smoother", default=None)
    p.add_argument("--recovery", default=None)
    a = p.parse_args(argv)
    assets = Path(a.assets).resolve()
    os.environ.setdefault("EDGEPOSE_MODEL_DIR", str(assets / "models"))
    load0 = os.getloadavg()
    opts = TemporalEvalOptions(assets=str(assets), cache_dir=a.cache_dir, smoother_path=a.smoother,
                               recovery_path=a.recovery)
    rows = evaluate_temporal(opts)
    for name in opts.clips:
        i = max(j for j, r in enumerate(rows) if r["clip"] == name and r["method"] == "one-euro tuned")
        rows.insert(i + 1, oracle_one_euro(name, a.cache_dir, assets))
    lat = latency()
    table = format_table(rows)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"edgepose": __version__, "host": platform.machine(), "python": sys.version.split()[0],
            "loadavg_start": load0, "loadavg_end": os.getloadavg(), "threads": 1,
            "model": opts.model}
    (out / "temporal_eval.json").write_text(json.dumps({"meta": meta, "rows": rows, "latency_ms": lat},
                                                       indent=1))
    lat_md = "\n".join(f"| {k} | {v['mean']:.3f} | {v['p50']:.3f} | {v['p90']:.3f} | {v['p99']:.3f} |"
                       for k, v in lat.items())
    md = (f"# Temporal quality\n\n{table}\n\n## Temporal model time per frame (ms)\n\n"
          f"| stage | mean | p50 | p90 | p99 |\n|---|---|---|---|---|\n{lat_md}\n")
    (out / "temporal_eval.md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
