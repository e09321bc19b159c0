"""``edgepose compress``: prune + distill + int8 a pretrained model with a teacher, with a report.

Example::

    edgepose compress --teacher ../shared/assets/models/movenet/movenet_thunder_fp32.onnx \\
        --model ../shared/assets/models/movenet/movenet_lightning_fp32.onnx \\
        --detector ../shared/assets/models/movenet/movenet_multipose_lightning_fp32.onnx \\
        --device rpi4 --budget-fraction 0.8 --out runs/compress --steps 250 --int8-sensitivity 1.0

``--device`` searches the least pruning whose latency (measured here, or emulated for that device
and labelled so) fits the profile's frame budget; an impossible budget stops before any labelling
with an error naming the best reachable latency. Outputs: pruned + distilled student as ONNX fp32
/ int8 (ORT static QDQ) and TFLite fp32 / int8 (litert-torch, when installed), report.md/json.
"""

from __future__ import annotations

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
    p.add_argument("--device", help="device profile (name or YAML): search the least pruning whose latency "
                                    "(measured here, or emulated for that device) fits its frame budget; "
                                    "overrides --ratio / --target-macs")
    p.add_argument("--budget-ms", type=float, help="latency budget in ms (default: the profile's frame budget "
                                                   "x --budget-fraction); without --device: measured on this host")
    p.add_argument("--budget-fraction", type=float, default=1.0,
                   help="share of the device's frame budget the pose network may use (default 1.0)")
    p.add_argument("--host-profile", help="measured host profile (edgepose profile) the emulator scales from; "
                                          "default: probe this host")
    p.add_argument("--cache-dir", default="runs/cache", help="pseudo-label cache (default runs/cache)")
    p.add_argument("--importance", default="content", choices=["magnitude", "taylor", "content"])
    p.add_argument("--global-pruning", action="store_true",
                   help="rank channels across layers instead of the same ratio per group")
    p.add_argument("--ratio", type=float, default=0.3, help="channel fraction pruned per group")
    p.add_argument("--target-macs", type=float, help="keep this fraction of MACs instead of --ratio")
    p.add_argument("--steps", type=int, default=250, help="distillation steps")
    p.add_argument("--lr", type=float, default=3e-4, help="distillation peak learning rate")
    p.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    p.add_argument("--int8-sensitivity", type=float, metavar="POINTS",
                   help="per-layer int8 sensitivity pass: keep the most sensitive convolutions float until "
                        "the proxy PCK (held-out training crops) drops by at most POINTS")
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite fp32/int8 export (litert-torch)")
    p.add_argument("--tflite-qat-steps", type=int, default=0, metavar="N",
                   help="int8 TFLite by quantisation-aware fine-tuning toward the float student's outputs "
                        "(N steps on augmented training crops, e.g. 1000) instead of post-training ranges")
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
    if args.tflite_qat_steps < 0:
        raise ConfigError(f"--tflite-qat-steps must be >= 0 (0 = post-training int8 ranges, e.g. 1000 for QAT), "
                          f"got {args.tflite_qat_steps}")
    budget = {}
    if args.device:
        from edgepose.profiles import load_profile

        load_profile(args.device)  # a bad name fails here, before any labelling
    if args.device or args.budget_ms is not None:
        budget = {"budget_ms": args.budget_ms, "budget_fraction": args.budget_fraction, "threads": args.threads}
        if args.host_profile:
            budget["host"] = args.host_profile
        if args.target_macs is not None:
            log.warning("--target-macs is ignored: the budget search chooses the pruning ratio")
    from edgepose.compression.pipeline import CompressConfig, compress

    prune = {"importance": args.importance, "ratio": args.ratio, "global_pruning": args.global_pruning}
    if args.target_macs is not None:
        prune["target_macs"] = args.target_macs
    cfg = CompressConfig(teacher=args.teacher, model=args.model, out=args.out, data=tuple(args.data),
                         cache_dir=args.cache_dir, detector=args.detector, data_root=args.data_root,
                         prune=prune, distill={"steps": args.steps, "lr": args.lr},
                         quantize={"calibration": args.calibration}, evaluate=not args.no_eval,
                         baseline=args.baseline, threads=args.threads, device=args.device, budget=budget,
                         sensitivity_gate=args.int8_sensitivity, tflite=not args.no_tflite,
                         tflite_qat_steps=args.tflite_qat_steps)
    try:
        compress(cfg, progress=True)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from exc
    with open(os.path.join(args.out, "report.md")) as fh:
        print(fh.read())
    return 0
