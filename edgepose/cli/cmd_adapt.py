"""``edgepose adapt``: specialise the edge model to one camera's scene (teacher labels, fine-tune, int8, gate).

    edgepose adapt shop_entrance/ --out runs/adapt_shop
    edgepose adapt $EDGEPOSE_ASSETS/data/opencv_doc/vtest.avi --frames 0:600 --scene vtest --out runs/adapt_vtest
    edgepose adapt --from-collection runs/collect --out runs/adapt_collected

The footage is split in time: the first part trains, the last ``--gate-fraction`` is the gate.
Writes ``candidate_int8.onnx`` / ``candidate_fp32.onnx`` (metadata ``edgepose.scene``: the files
and frames learned from), ``adapt_report.json`` / ``.md`` and, when the gate accepts,
``adapted_int8.onnx``. The gate accepts only with enough evidence (``--gate-min-crops`` gate
crops, not worse than the current model, worse in at most ``--gate-max-risk`` of a paired
bootstrap over the gate frames). Exit status 0: accepted; 3: the gate refused the candidate;
2: a bad argument.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgepose.cli import _args
from edgepose.errors import ConfigError

NAME = "adapt"
HELP = "specialise the edge model to one camera's scene (teacher-labelled fine-tuning, int8, accuracy gate)"

#: Exit status when the gate refuses the candidate.
REFUSED = 3


def frame_range(text: str) -> tuple[int, int | None]:
    """``START:STOP`` (STOP exclusive, empty = to the end) of every video source."""
    a, sep, b = text.partition(":")
    try:
        start, stop = int(a or 0), (int(b) if b else None)
    except ValueError:
        start = stop = -1
    if not sep or start < 0 or (stop is not None and stop <= start):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame range; give START:STOP with 0 <= START < STOP "
                                         "(STOP exclusive, e.g. 0:600; 100: = to the end)")
    return start, stop


def source_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"source {text!r} does not exist; pass a video file or a folder of videos")
    return text


def add_arguments(p):
    p.add_argument("sources", nargs="*", type=source_path,
                   help="videos (or folders of them) of the scene, or nothing with --from-collection")
    p.add_argument("--out", required=True, type=_args.output_dir,
                   help="folder for the candidate models, the adapted model and the report")
    p.add_argument("--frames", type=frame_range, help="START:STOP frame range of every video (default: all)")
    p.add_argument("--from-collection", type=_args.existing_dir("collection folder"),
                   help="train on the crops `edgepose serve --collect DIR` kept (instead of videos)")
    p.add_argument("--scene", default="scene", help="scene name written into the model's metadata")
    p.add_argument("--student", choices=("lightning", "pruned"), default="lightning",
                   help="lightning: the deployed architecture (same latency); pruned: channel-pruned first")
    p.add_argument("--target-macs", type=_args.float_range(0.05, 0.95), default=0.5,
                   help="MACs the pruned student keeps (fraction of Lightning's). Measured (int8 ORT, 1 thread): "
                        "0.5 / 0.25 / 0.11 of the MACs run at 0.76 / 0.58 / 0.60x Lightning int8's latency, and "
                        "a pruned student needs pool pre-training before a scene (benchmarks/scene_student.py)")
    p.add_argument("--steps", type=_args.int_range(1), default=150, help="fine-tuning steps")
    p.add_argument("--batch-size", type=_args.int_range(1, 1024), default=16, help="crops per step")
    p.add_argument("--lr", type=_args.float_range(0.0, 1.0, low_open=True), default=5e-5, help="peak learning rate")
    p.add_argument("--gate-fraction", type=_args.float_range(0.05, 0.5), default=0.2,
                   help="last share of the footage held out for the gate")
    p.add_argument("--gate-margin", type=_args.float_range(0.0, 100.0), default=0.0,
                   help="PCK points the candidate may be worse than the current model and still pass (0, the default: it must "
                        "agree better than the current model; a tie is refused)")
    p.add_argument("--gate-min-crops", type=_args.int_range(0), default=30,
                   help="gate crops the gate needs before it can accept (fewer: refused for too little evidence)")
    p.add_argument("--gate-max-risk", type=_args.float_range(0.0, 1.0), default=0.25,
                   help="largest share of paired bootstrap resamples of the gate frames in which the candidate "
                        "may be worse than the current model")
    p.add_argument("--w-ref", type=_args.float_range(0.0, 100.0), default=1.0,
                   help="online KD from the frozen generic model (a regulariser for short clips; 0 = off)")
    p.add_argument("--label-stride", type=_args.int_range(1), default=1,
                   help="label every n-th frame of the training segment (long clips are strided to 150 frames)")
    p.add_argument("--augment", choices=("light", "full", "none"), default="light",
                   help="training augmentation: light (default: one camera's crops need little variety), full "
                        "(the generic recipe's: zoom, rotation, cutout, blur), none")
    p.add_argument("--float-stem", type=_args.int_range(0, 8), default=0,
                   help="first n convolutions kept float in the int8 candidate (0: full int8)")
    p.add_argument("--current", type=_args.input_file(".onnx", what="--current model"),
                   help="the deployed model the gate compares against (default: the shipped Lightning int8)")
    p.add_argument("--teacher", type=_args.input_file(".onnx", what="--teacher"),
                   help="teacher ONNX (default: ASSETS/models/movenet/movenet_thunder_fp32.onnx)")
    p.add_argument("--detector", type=_args.input_file(".onnx", what="--detector"),
                   help="person detector ONNX (default: ASSETS/models/movenet/movenet_multipose_lightning_fp32.onnx)")
    p.add_argument("--base", type=_args.input_file(".onnx", what="--base"),
                   help="fp32 ONNX the student starts from (default: ASSETS/models/movenet/movenet_lightning_fp32.onnx)")
    p.add_argument("--assets", type=_args.existing_dir("assets folder"), help="default: $EDGEPOSE_ASSETS")
    p.add_argument("--cache", type=_args.output_dir, help="teacher label cache (default: OUT/../cache_adapt)")
    p.add_argument("--threads", type=_args.int_range(1, 256), default=2, help="torch / ONNX Runtime threads")


def _items(args):
    from edgepose.compression.adapt.scene import collection_items
    from edgepose.compression.data.shippable import VIDEOS
    from edgepose.compression.data.sources import MediaItem, scan_media

    if bool(args.sources) == bool(args.from_collection):
        raise ConfigError("give the scene's videos or --from-collection DIR (exactly one of the two)")
    if args.from_collection:
        return collection_items(args.from_collection)
    try:
        items = [i for i in scan_media(args.sources) if i.kind == "video"]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not items:
        raise ConfigError(f"no video among {args.sources}; pass video files (.mp4, .avi, ...) of the scene")
    start, stop = args.frames or (0, None)
    items = [MediaItem(i.path, "video", start, stop) for i in items]
    for it in items:  # the shared evaluation frames are never trained or gated on
        for rel, lo, hi in VIDEOS:
            if hi is not None and it.path.replace(os.sep, "/").endswith(rel) and (it.stop is None or it.stop > hi):
                raise ConfigError(f"{rel} frames from {hi} are evaluation frames (ASSETS.md); pass --frames "
                                  f"{lo}:{hi} or a range inside it")
    return items


def run(args) -> int:
    items = _items(args)
    _args.check_extra("torch", "compress", "torch", "edgepose adapt")
    from edgepose.assets import assets_dir
    from edgepose.compression.adapt import AdaptConfig, adapt
    from edgepose.compression.default_model import DATA_DIR, MODEL_NAME

    need = [a for a in ("teacher", "detector", "base") if getattr(args, a) is None]
    mv = assets_dir(args.assets) / "models" / "movenet" if need else None
    teacher = args.teacher or str(mv / "movenet_thunder_fp32.onnx")
    detector = args.detector or str(mv / "movenet_multipose_lightning_fp32.onnx")
    base = args.base or str(mv / "movenet_lightning_fp32.onnx")
    cfg = AdaptConfig(student=args.student, target_macs=args.target_macs, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, gate_fraction=args.gate_fraction,
                      gate_margin=args.gate_margin, gate_min_crops=args.gate_min_crops,
                      gate_max_risk=args.gate_max_risk, w_ref=args.w_ref, label_stride=args.label_stride,
                      float_stem=args.float_stem, augment=args.augment, threads=args.threads)
    cache = args.cache or str(Path(args.out).absolute().parent / "cache_adapt")
    res = adapt(items, args.out, cfg, teacher=teacher, detector=detector, base_fp32=base,
                current=args.current or str(DATA_DIR / MODEL_NAME), cache_dir=cache, scene_name=args.scene)
    g = res.gate
    print(f"gate: candidate PCK vs teacher {g['candidate']['pck']:.2f} vs current {g['current']['pck']:.2f} "
          f"on {g['candidate']['crops']} held-out crops -> {'accepted' if res.accepted else 'REFUSED'} ({g['reason']})")
    print(f"wrote {args.out}/adapt_report.md" + (f" and {res.adapted}" if res.adapted else ""))
    return 0 if res.accepted else REFUSED
