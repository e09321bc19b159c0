"""``edgepose eval-video``: agreement of a tracked run with a reference track (px error, PCK)."""

from __future__ import annotations

import json

NAME = "eval-video"
HELP = "compare a tracked run on a video with a reference track (mean px error, PCK@0.2 torso)"


def add_arguments(p):
    p.add_argument("video", help="the video file (e.g. tfjs_testdata/pose_1.mp4)")
    p.add_argument("--model", required=True, help="a model card name or a .onnx / .tflite file")
    p.add_argument("--card", help="the card to read a model file with, when it is not recognised")
    p.add_argument("--reference", required=True, metavar="REF.json",
                   help="reference track: tfjs pose_1.json (COCO-17) or pose_squats.full.json "
                   "(BlazePose 33)")
    p.add_argument("--no-smoothing", action="store_true",
                   help="compare raw tracked keypoints (default: One Euro smoothed, as PoseEstimator)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--json", metavar="OUT", help="write the comparison as JSON here")
    p.add_argument("--threads", type=int, help="inference threads (default: the runtime's)")
    p.add_argument("--model-dir", help="an extra folder to search for model files")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from edgepose.eval.video import compare_tracks, load_reference, run_tracked
    from edgepose.models import load_model

    ref = load_reference(args.reference)  # fail on a bad reference before loading the model
    if args.max_frames is not None:
        ref.keypoints = ref.keypoints[:args.max_frames]
    with load_model(args.model, card=args.card, num_threads=args.threads,
                    model_dir=args.model_dir) as model:
        pred = run_tracked(model, args.video, smoothing=not args.no_smoothing,
                           max_frames=args.max_frames,
                           progress=not args.no_progress)
        name = model.name
    result = {"model": name, "video": args.video, "reference": args.reference,
              "smoothing": not args.no_smoothing,
              **compare_tracks(pred, ref)}
    pck = "-" if result["pck_torso"] is None else f"{result['pck_torso']:.1f} %"
    err = "-" if result["mean_px_error"] is None else f"{result['mean_px_error']:.2f} px"
    print(f"model: {name}\nframes compared: {result['frames']} (missed {result['missed_frames']})\n"
          f"mean error: {err} (median {result['median_px_error']}, p90 {result['p90_px_error']})\n"
          f"PCK@0.2 x torso: {pck}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")
    return 0
