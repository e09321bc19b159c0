"""End-to-end video case: a model in ``PoseEstimator`` video mode on a real clip.

Frames are decoded first (decode time reported on its own), then each frame goes through
``detect_for_video(frame, timestamp_ms)``; the per-frame wall time gives frames/s and latency
percentiles, and ``PoseResult.timings_ms`` the per-stage times (preprocess, infer, decode,
detect, track, smooth...). Video figures are always measured on this host: the stages outside
the model (OpenCV crops, tracking, smoothing) are not emulated.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _clip_path(spec, suite, assets) -> Path:
    from edgepose.errors import SourceError

    p = Path(spec.clip)
    cands = [p] if p.is_absolute() else [*([Path(assets) / p] if assets else []), suite.path.parent / p, p]
    for c in cands:
        if c.is_file():
            return c
    raise SourceError(f"video clip {spec.clip!r} not found; looked in: {', '.join(map(str, cands))}. "
                      "Pass --assets ROOT or fix the path")


def run_video(ctx, spec, suite) -> dict:
    """Run one ``video:`` entry; returns its JSON row."""
    from tqdm import tqdm

    from edgepose.bench.emulator import MEASURED
    from edgepose.bench.measure import _sha, latency_stats
    from edgepose.bench.suite import resolve_model
    from edgepose.estimator import EstimatorOptions, PoseEstimator, RunningMode
    from edgepose.video.sources import VideoFileSource

    path, card = resolve_model(spec.model, assets=ctx.options.assets, suite_dir=suite.path.parent)
    clip = _clip_path(spec, suite, ctx.options.assets)
    frames, decode_ms = [], []
    with VideoFileSource(clip, max_frames=spec.frames) as src:
        it = iter(src)
        while True:
            t0 = time.perf_counter()
            try:
                fr = next(it)
            except StopIteration:
                break
            decode_ms.append((time.perf_counter() - t0) * 1e3)
            frames.append(fr)
    if not frames:
        from edgepose.errors import SourceError

        raise SourceError(f"video clip {str(clip)!r} gave no frames")
    from edgepose.models import load_model

    t0 = time.perf_counter()
    model = load_model(str(path), card=card, num_threads=spec.threads)  # the resolved file, not a search
    est = PoseEstimator(model, options=EstimatorOptions(running_mode=RunningMode.VIDEO))
    init_ms = (time.perf_counter() - t0) * 1e3
    wall, stages, detected = [], {}, 0
    try:
        for fr in tqdm(frames, desc=spec.name, disable=not ctx.options.progress, leave=False, unit="frame"):
            t1 = time.perf_counter()
            res = est.detect_for_video(fr.image, fr.timestamp_ms)
            wall.append((time.perf_counter() - t1) * 1e3)
            for k, v in (res.timings_ms or {}).items():
                stages.setdefault(k, []).append(float(v))
            detected += bool(res.poses)
    finally:
        est.close()
        model.close()
    total_s = sum(wall) / 1e3
    return {
        "id": spec.name, "model": spec.model, "model_path": str(path), "model_sha256": _sha(ctx, path),
        "clip": str(clip), "frames": len(frames), "frame_size": list(frames[0].image.shape[:2]),
        "threads": spec.threads, "profile": "host", "kind": MEASURED, "init_ms": init_ms,
        "fps": len(frames) / total_s if total_s else None,
        "latency_ms": latency_stats(wall),
        "stages_ms": {k: {"p50": float(np.percentile(v, 50)), "mean": float(np.mean(v)), "n": len(v)}
                      for k, v in stages.items()},
        "decode_ms": {"p50": float(np.percentile(decode_ms, 50)), "mean": float(np.mean(decode_ms))},
        "frames_with_pose": detected, "versions": ctx.versions, "status": "ok",
    }
