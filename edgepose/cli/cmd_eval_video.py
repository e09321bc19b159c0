"""``edgepose eval-video``: agreement of a tracked run with a reference track (px error, PCK) and
its temporal quality (acceleration error, high-frequency energy; :mod:`edgepose.eval.jitter`)."""

from __future__ import annotations

import json

from edgepose.cli import _args

NAME = "eval-video"
HELP = ("compare a tracked run on a video with a reference track (mean px error, PCK@0.2 torso, "
        "acceleration error, high-frequency energy)")


def add_arguments(p):
    p.add_argument("video", type=_args.input_file(what="video"), help="the video file (e.g. tfjs_testdata/pose_1.mp4)")
    p.add_argument("--model", required=True, help="a model card name or a .onnx / .tflite file")
    p.add_argument("--card", help="the card to read a model file with, when it is not recognised")
    p.add_argument("--reference", required=True, metavar="REF.json", type=_args.json_file("reference"),
                   help="reference track: tfjs pose_1.json (COCO-17) or pose_squats.full.json "
                   "(BlazePose 33)")
    p.add_argument("--no-smoothing", action="store_true",
                   help="compare raw tracked keypoints (default: One Euro smoothed, as PoseEstimator)")
    p.add_argument("--max-frames", type=_args.int_range(1), help="stop after this many frames")
    p.add_argument("--json", metavar="OUT", type=_args.output_file, help="write the comparison as JSON here")
    p.add_argument("--threads", type=_args.int_range(1), help="inference threads (default: the runtime's)")
    p.add_argument("--model-dir", type=_args.existing_dir("model folder"), help="an extra folder to search for model files")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from edgepose.eval.video import compare_tracks, load_reference, run_tracked, temporal_comparison
    from edgepose.models import load_model
    from edgepose.video.sources import VideoFileSource

    ref = load_reference(args.reference)  # fail on a bad reference before loading the model
    if args.max_frames is not None:
        ref.keypoints = ref.keypoints[:args.max_frames]
    with VideoFileSource(args.video, max_frames=1) as src:
        fps = src.fps
    with load_model(args.model, card=args.card, num_threads=args.threads,
                    model_dir=args.model_dir) as model:
        pred = run_tracked(model, args.video, smoothing=not args.no_smoothing,
                           max_frames=args.max_frames,
                           progress=not args.no_progress)
        name = model.name
    result = {"model": name, "video": args.video, "reference": args.reference,
              "smoothing": not args.no_smoothing,
              **compare_tracks(pred, ref), **temporal_comparison(pred, ref, fps)}
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


def _fmt(v, spec: str, unit: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{unit}"


def format_result(r: dict) -> str:
    """The printed summary: agreement (all 17 joints) then temporal metrics (13 shared joints)."""
    lines = [
        f"model: {r['model']}",
        f"frames compared: {r['frames']} (missed {r['missed_frames']})",
        f"mean error: {_fmt(r['mean_px_error'], '.2f', ' px')} (median {r['median_px_error']}, "
        f"p90 {r['p90_px_error']})",
        f"PCK@0.2 x torso: {_fmt(r['pck_torso'], '.1f', ' %')}",
        "",
        f"temporal metrics (13 shared joints, {_fmt(r.get('fps'), 'g')} fps):",
        "| metric | value |",
        "|---|---|",
        f"| accel err (px/frame^2) | {_fmt(r.get('accel_error'), '.3f')} |",
        f"| pos err (px) | {_fmt(r.get('position_error'), '.3f')} |",
        f"| HF energy > {_fmt(r.get('cutoff_hz'), 'g')} Hz (px^2) | {_fmt(r.get('hf_energy'), '.3f')} |",
        f"| HF energy of error (px^2) | {_fmt(r.get('hf_energy_error'), '.3f')} |",
        f"| PCK@0.2 (%) | {_fmt(r.get('pck'), '.1f')} |",
        f"| PCK@0.05 (%) | {_fmt(r.get('pck05'), '.1f')} |",
    ]
    return "\n".join(lines)
