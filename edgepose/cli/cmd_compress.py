"""``edgepose compress``: prune + distill + int8 a pretrained model with a teacher, with a report.

Example::

    edgepose compress --teacher ../shared/assets/models/movenet/movenet_thunder_fp32.onnx \\
        --model ../shared/assets/models/movenet/movenet_lightning_fp32.onnx \\
        --detector ../shared/assets/models/movenet/movenet_multipose_lightning_fp32.onnx \\
        --device rpi4 --out runs/compress --ratio 0.3 --steps 250
"""

from __future__ import annotations

import json
import logging
import os

NAME = "compress"
HELP = "compress a pretrained pose model (prune, distill from a teacher, int8) and report"

log = logging.getLogger(__name__)


def add_arguments(p):
    p.add_argument("--teacher", required=True, help="teacher ONNX (MoveNet Thunder fp32)")
    p.add_argument("--model", required=True, help="model to compress (MoveNet Lightning fp32 ONNX)")
    p.add_argument("--out", required=True, help="output folder (models, report, plan, manifest)")
    p.add_argument("--data", action="append", default=[],
                   help="folder/file of training images or videos (repeatable); default: the shared "
                        "training pool under --data-root (never the evaluation sets)")
    p.add_argument("--data-root", default=os.environ.get("EDGEPOSE_DATA", "../shared/assets/data"),
                   help="assets data folder (training pool + evaluation sets)")
    p.add_argument("--detector", help="MoveNet MultiPose ONNX to find people in the training frames; "
                                      "without it each frame is one whole-frame crop")
    p.add_argument("--device", help="device profile the result is meant for (recorded in the report; "
                                    "budget search is not implemented yet: choose --ratio/--target-macs)")
    p.add_argument("--cache-dir", default="runs/cache", help="pseudo-label cache (default runs/cache)")
    p.add_argument("--importance", default="content", choices=["magnitude", "taylor", "content"])
    p.add_argument("--global-pruning", action="store_true",
                   help="rank channels across layers instead of the same ratio per group")
    p.add_argument("--ratio", type=float, default=0.3, help="channel fraction pruned per group")
    p.add_argument("--target-macs", type=float, help="keep this fraction of MACs instead of --ratio")
    p.add_argument("--steps", type=int, default=250, help="distillation steps")
    p.add_argument("--lr", type=float, default=3e-4, help="distillation peak learning rate")
    p.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    p.add_argument("--baseline", help="an extra model file timed / evaluated beside (e.g. the official "
                                      "movenet_lightning_int8.tflite)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation-set accuracy")
    p.add_argument("--threads", type=int, default=2)


def run(args) -> int:
    from edgepose.errors import ConfigError

    for flag, path in (("--teacher", args.teacher), ("--model", args.model), ("--detector", args.detector),
                       ("--baseline", args.baseline)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{flag} file not found: {path!r}; pass the path of an existing model file")
    profile = None
    if args.device:
        from edgepose.profiles import load_profile

        profile = load_profile(args.device)
        log.warning("budget search for --device %s is not implemented yet; using the pruning "
                    "ratio given (--ratio / --target-macs)", args.device)
    from edgepose.compression.pipeline import CompressConfig, compress

    prune = {"importance": args.importance, "ratio": args.ratio, "global_pruning": args.global_pruning}
    if args.target_macs is not None:
        prune["target_macs"] = args.target_macs
    cfg = CompressConfig(teacher=args.teacher, model=args.model, out=args.out, data=tuple(args.data),
                         cache_dir=args.cache_dir, detector=args.detector, data_root=args.data_root,
                         prune=prune, distill={"steps": args.steps, "lr": args.lr},
                         quantize={"calibration": args.calibration}, evaluate=not args.no_eval,
                         baseline=args.baseline, threads=args.threads)
    try:
        report = compress(cfg, progress=True)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from exc
    if profile is not None:
        report["device"] = {"name": profile.name, "frame_budget_ms": profile.frame_budget.frame_ms,
                            "note": "budget search not implemented; latency measured on this host"}
        with open(os.path.join(args.out, "report.json"), "w") as fh:
            json.dump(report, fh, indent=1, default=str)
    with open(os.path.join(args.out, "report.md")) as fh:
        print(fh.read())
    return 0
