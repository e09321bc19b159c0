"""``edgepose eval-temporal``: jitter and accuracy of smoothing and sparse keyframes on video."""

from __future__ import annotations

from edgepose.cli import _args

NAME = "eval-temporal"
HELP = ("temporal quality on the evaluation clips: acceleration error, high-frequency energy, "
        "position error, PCK for raw / One Euro / learned smoother / keyframes + recovery")


def add_arguments(p):
    from edgepose.eval.temporal import EVAL_CLIPS

    p.add_argument("--clips", default=",".join(EVAL_CLIPS),
                   help=f"comma-separated clips (default: all of {', '.join(EVAL_CLIPS)})")
    p.add_argument("--model", default="movenet-lightning-int8", help="the per-frame edge model card")
    p.add_argument("--delays", default=(0, 2, 4, 8), type=_args.int_list(0), help="learned smoother online delays, frames")
    p.add_argument("--no-offline", action="store_true", help="skip the offline smoother row")
    p.add_argument("--keyframes", default=(3, 5), type=_args.int_list(2), help="keyframe intervals k ('' to skip)")
    p.add_argument("--min-score", type=_args.float_range(0.0, 1.0), default=None, help="smoother uncertainty gating threshold")
    p.add_argument("--smoother", default=None, type=_args.input_file(".onnx", what="smoother"), help="smoother .onnx (default: the shipped one)")
    p.add_argument("--recovery", default=None, type=_args.input_file(".onnx", what="recovery model"), help="recovery .onnx (default: the shipped one)")
    p.add_argument("--cache-dir", default="runs/temporal_tracks",
                   help="cache of per-frame model tracks ('' to recompute)")
    p.add_argument("--assets", default=None, type=_args.existing_dir("assets folder"), help="shared assets folder (default: $EDGEPOSE_ASSETS "
                   "(edgepose.assets: $EDGEPOSE_ASSETS, default ../shared/assets in a checkout)")
    p.add_argument("--json", default=None, type=_args.output_file, help="also write the rows to this JSON file")


def run(args) -> int:
    import json

    from edgepose.eval.temporal import EVAL_CLIPS
    from edgepose.eval.temporal_report import TemporalEvalOptions, evaluate_temporal, format_table
    from edgepose.errors import unknown_name

    clips = tuple(c.strip() for c in args.clips.split(",") if c.strip())
    for c in clips:
        if c not in EVAL_CLIPS:
            raise unknown_name("evaluation clip", c, EVAL_CLIPS)
    opts = TemporalEvalOptions(clips=clips, model=args.model, delays=args.delays,
                               offline=not args.no_offline, keyframe_intervals=args.keyframes,
                               min_score=args.min_score, smoother_path=args.smoother,
                               recovery_path=args.recovery, cache_dir=args.cache_dir or None,
                               assets=args.assets)
    rows = evaluate_temporal(opts)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0
