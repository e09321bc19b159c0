"""``edgepose run INPUT``: poses on a video file or camera -> annotated video + JSON lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgepose.cli import _args
from edgepose.models import DEFAULT_MODEL  # MoveNet Lightning int8 ONNX, shipped in the package

NAME = "run"
HELP = "run a pose model on a video file, a camera index or 'demo'; write an annotated video and JSON lines"


def add_arguments(p):
    p.add_argument("input", help="video file, camera index (0) or device path, or 'demo' for the built-in clip")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model name (see 'edgepose models') or .onnx/.tflite path (default: {DEFAULT_MODEL})")
    p.add_argument("--card", help="model card for a model file edgepose cannot identify")
    p.add_argument("--model-dir", type=_args.existing_dir("model folder"),
                   help="an extra folder to search for model files")
    p.add_argument("--out", default="runs", type=_args.output_dir, help="output folder (default: ./runs)")
    p.add_argument("--threads", type=_args.int_range(1), default=None, help="inference threads (default: all cores)")
    p.add_argument("--max-frames", type=_args.int_range(1), default=None, help="stop after this many frames")
    p.add_argument("--smoother", choices=("one_euro", "learned_gain", "learned", "none"), default="one_euro",
                   help="keypoint smoothing: One Euro (default), One Euro with a learned per-joint gain "
                   "(learned_gain), the learned zero-lag SmoothNet (learned), or none")
    p.add_argument("--no-smooth", action="store_true", help="same as --smoother none")
    p.add_argument("--person-selection", choices=("model", "nearest"), default="model",
                   help="whom to follow when several people are in view: the model's own pick (default) or "
                        "'nearest' (MoveNet MultiPose lists everyone; the person nearest the track, else the largest)")
    p.add_argument("--no-video", action="store_true", help="write only the JSON lines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from edgepose._optional import require
    from edgepose.estimator import EstimatorOptions, PoseEstimator, RunningMode
    from edgepose.models import load_model
    from edgepose.video.draw import draw_result
    from edgepose.video.sources import open_source

    cv2 = require("cv2", "base", package="opencv-python-headless")
    if args.input == "demo":
        from edgepose.demo import demo_clip_path

        src_spec = str(demo_clip_path())
    else:
        src_spec = args.input
        _check_input(src_spec)
    model = load_model(args.model, card=args.card, num_threads=args.threads, model_dir=args.model_dir)
    opts = EstimatorOptions(running_mode=RunningMode.VIDEO, smoothing=not args.no_smooth,
                            smoother=args.smoother, person_selection=args.person_selection)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "camera" if src_spec.isdigit() else Path(src_spec).stem
    jsonl_path = out_dir / f"{stem}.poses.jsonl"
    video_path = out_dir / f"{stem}.annotated.mp4"
    writer = None
    infer_ms, total_ms, found = [], [], 0
    t_start = time.perf_counter()
    with open_source(src_spec, max_frames=args.max_frames) as src, \
            PoseEstimator(model, options=opts) as est, open(jsonl_path, "w") as jf:
        n = len(src) or None
        for frame in tqdm(src, total=n, unit="frame", disable=args.no_progress, desc=stem):
            result = est.detect_for_video(frame.image, frame.timestamp_ms)
            jf.write(json.dumps(result.to_dict()) + "\n")
            infer_ms.append(result.timings_ms.get("infer", 0.0))
            total_ms.append(result.timings_ms["total"])
            found += bool(result.poses)
            if not args.no_video:
                if writer is None:
                    h, w = frame.image.shape[:2]
                    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"),
                                             getattr(src, "fps", 30.0), (w, h))
                writer.write(cv2.cvtColor(draw_result(frame.image, result), cv2.COLOR_RGB2BGR))
    if writer is not None:
        writer.release()
    model.close()
    frames = len(total_ms)
    wall = time.perf_counter() - t_start
    print(f"model {args.model}: {frames} frames, person found in {found}, "
          f"pipeline p50 {np.median(total_ms) if frames else 0:.1f} ms "
          f"(model invoke p50 {np.median(infer_ms) if frames else 0:.1f} ms), "
          f"{frames / wall if wall > 0 else 0:.1f} frames/s end to end")
    print(f"wrote {jsonl_path}" + ("" if args.no_video else f" and {video_path}"))
    return 0


def _check_input(spec: str) -> None:
    """A file input must exist and be a readable file (camera indices and device paths pass)."""
    import os

    from edgepose.errors import ConfigError

    if spec.isdigit() or spec.startswith(("/dev/", "rtsp://", "http://", "https://")):
        return
    if not os.path.exists(spec):
        raise ConfigError(f"input {spec!r} does not exist; pass a video file, a camera index (0) or 'demo'")
    if not os.path.isfile(spec) or not os.access(spec, os.R_OK):
        raise ConfigError(f"input {spec!r} is not a readable file; pass a video file, a camera index (0) or 'demo'")
