"""``edgepose compress``: prune + distill + int8 a pretrained model with a teacher, with a report.

Example::

    edgepose compress --teacher ../shared/assets/models/movenet/movenet_thunder_fp32.onnx \\
        --model ../shared/assets/models/movenet/movenet_lightning_fp32.onnx \\
        --detector ../shared/assets/models/movenet/movenet_multipose_lightning_fp32.onnx \\
        --device rpi4 --budget-fraction 0.8 --out runs/compress --steps 250 --int8-sensitivity 1.0

Candidates: the input model, its int8 (ORT static QDQ with the folded input; with litert-torch
also the sparse-head LiteRT int8) and compress's own candidates, trained by ``--method`` with the
same loss modules and trainer as the ``edgepose train`` recipes:

* ``kd`` (default): the pruned student (``--device`` picks the least pruning whose latency fits the
  profile's frame budget), heatmap KD from the teacher's labels + the unpruned model (recipe ``kd``);
* ``feature-kd``: the same pruned student with the long-KD loss: features + heads of the unpruned
  model and the teacher's maps (recipe ``feature-kd``);
* ``okdhp`` / ``vitkd`` / ``dkd``: another architecture from scratch on the same labels, ``--steps``
  steps at its recipe's learning rate: the OKDHP multi-branch heatmap student (best branch), a tiny
  ViT with ViTKD from a ViT teacher trained first (recipe ``vit``), the DKD temporal student (recipe
  ``dkd``: needs ``--detector`` and training videos; the gate scores it per frame). Exported as
  ``<method>_fp32.onnx`` / ``<method>_int8.onnx`` at their own input size.

With ``kd`` the student is trained by default only when no int8 of the unpruned model already
passes the floor and the budget (``--student`` always, ``--no-student`` never); any other method is
trained unless ``--no-student``. ``--progressive`` adds progressive, latency-aware pruning. An
accuracy gate scores every candidate on held-out data (``--val-data``, else agreement with the
teacher on held-out training crops, and the 161-person evaluation set when ``--data-root`` has it);
none below ``--floor`` x the input model's score is recommended. Outputs: report.json
(``recommended``: the chosen model's path), report.md (host-measured and device figures in separate
columns), pareto.png, the models, a manifest.

Cheap checks run first (paths, extras, option ranges), before any model is loaded.
"""

from __future__ import annotations

import logging
import os

from edgepose.compression.methods import DEFAULT_METHOD, METHODS

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
                                    "(measured here, or emulated for that device) fits its frame budget, and "
                                    "check the recommendation against that budget; overrides --ratio / --target-macs")
    p.add_argument("--budget-ms", type=float, help="latency budget in ms (default: the profile's frame budget "
                                                   "x --budget-fraction); without --device: measured on this host")
    p.add_argument("--budget-fraction", type=float, default=1.0,
                   help="share of the device's frame budget the pose network may use (default 1.0)")
    p.add_argument("--host-profile", help="measured host profile (edgepose profile) the emulator scales from; "
                                          "default: probe this host")
    p.add_argument("--floor", type=float, default=0.97,
                   help="accuracy gate: a candidate must keep this fraction of the input model's score on every "
                        "held-out set, in (0, 1] (default 0.97 = 97 %%)")
    p.add_argument("--val-data", metavar="COCO_JSON",
                   help="your labelled validation set (COCO person-keypoints JSON) for the accuracy gate; "
                        "default: agreement with the teacher on held-out training crops")
    p.add_argument("--val-images", metavar="DIR", help="image folder of --val-data (default: the JSON's folder)")
    st = p.add_mutually_exclusive_group()
    st.add_argument("--student", action="store_true",
                    help="always train the one-shot pruned + distilled student (default: only when no int8 of "
                         "the unpruned model already passes the floor and the budget; it takes minutes)")
    st.add_argument("--no-student", action="store_true",
                    help="never train the pruned + distilled student (only the input model and its int8)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="how compress's own candidates are trained (default kd): kd / feature-kd train the pruned "
                        "student (heatmap KD / features + heads of the unpruned model); okdhp / vitkd / dkd train "
                        "that recipe's architecture from scratch for --steps steps (dkd needs --detector and "
                        "training videos); all but kd are trained unless --no-student")
    p.add_argument("--progressive", action="store_true",
                   help="also progressive, latency-aware pruning: small steps (--progressive-step-ratio of the "
                        "channels of each stage whose removal makes ONNX Runtime faster here), each followed by "
                        "--progressive-kd-steps of feature + head KD, until the gate fails (minutes per step)")
    p.add_argument("--progressive-steps", type=int, default=6, help="most progressive pruning steps (default 6)")
    p.add_argument("--progressive-step-ratio", type=float, default=0.1,
                   help="channel fraction per progressive step, in (0, 0.5] (default 0.1)")
    p.add_argument("--progressive-kd-steps", type=int, default=150,
                   help="distillation steps after each progressive step (default 150)")
    p.add_argument("--train-pool", action="store_true",
                   help="add the person crops of DATA_ROOT/train_pool to the training material (its licence-clean "
                        "sources only; see compression/data/shippable.py)")
    p.add_argument("--no-int8-mixed", action="store_true",
                   help="skip the mixed-precision int8 of the input model (saves the ~1 min sensitivity pass)")
    p.add_argument("--cache-dir", default="runs/cache", help="pseudo-label cache (default runs/cache)")
    p.add_argument("--importance", default="content", choices=["magnitude", "taylor", "content"])
    p.add_argument("--global-pruning", action="store_true",
                   help="rank channels across layers instead of the same ratio per group")
    p.add_argument("--ratio", type=float, default=0.3, help="channel fraction pruned per group, in [0, 1)")
    p.add_argument("--target-macs", type=float, help="keep this fraction of MACs instead of --ratio, in (0, 1]")
    p.add_argument("--steps", type=int, default=250, help="training steps of --method")
    p.add_argument("--lr", type=float, default=3e-4,
                   help="peak learning rate of kd / feature-kd (okdhp / vitkd / dkd use their recipe's)")
    p.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    p.add_argument("--int8-sensitivity", type=float, metavar="POINTS",
                   help="per-layer int8 sensitivity pass: keep the most sensitive convolutions float until "
                        "the proxy PCK (teacher agreement on training crops, not the gate's held-out ones) drops "
                        "by at most POINTS (the student's int8; the input model's mixed int8 uses 0.5)")
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite int8 candidates (litert-torch)")
    p.add_argument("--tflite-qat-steps", type=int, default=0, metavar="N",
                   help="int8 TFLite by quantisation-aware fine-tuning toward the float student's outputs "
                        "(N steps on augmented training crops, e.g. 1000) instead of post-training ranges")
    p.add_argument("--baseline", help="an extra model file timed / evaluated beside (e.g. the official "
                                      "movenet_lightning_int8.tflite); never recommended")
    p.add_argument("--no-eval", action="store_true",
                   help="skip the evaluation-set accuracy (the gate then uses the held-out set only)")
    p.add_argument("--threads", type=int, default=2)


def _bad(option: str, value, valid: str, fix: str):
    from edgepose.errors import ConfigError

    return ConfigError(f"{option} {value!r} is invalid: {valid}. {fix}")


def _check_ranges(args) -> None:
    """Option ranges: each bad value names the option, the valid values and the fix."""
    checks = [
        ("--floor", args.floor, 0 < args.floor <= 1, "a fraction of the input model's score in (0, 1]",
         "e.g. --floor 0.97 keeps 97 %"),
        ("--steps", args.steps, args.steps >= 1, "an integer >= 1", "e.g. --steps 250"),
        ("--lr", args.lr, args.lr > 0, "a learning rate > 0", "e.g. --lr 3e-4"),
        ("--ratio", args.ratio, 0 <= args.ratio < 1, "a channel fraction in [0, 1)", "e.g. --ratio 0.3"),
        ("--threads", args.threads, args.threads >= 1, "an integer >= 1", "e.g. --threads 2"),
        ("--budget-fraction", args.budget_fraction, 0 < args.budget_fraction <= 1, "a share of the frame in (0, 1]",
         "e.g. --budget-fraction 0.8"),
        ("--tflite-qat-steps", args.tflite_qat_steps, args.tflite_qat_steps >= 0,
         "must be >= 0 (0 = post-training int8 ranges)", "e.g. 1000 for QAT"),
        ("--progressive-steps", args.progressive_steps, args.progressive_steps >= 1, "an integer >= 1",
         "e.g. --progressive-steps 6"),
        ("--progressive-step-ratio", args.progressive_step_ratio, 0 < args.progressive_step_ratio <= 0.5,
         "a channel fraction in (0, 0.5]", "e.g. --progressive-step-ratio 0.1"),
        ("--progressive-kd-steps", args.progressive_kd_steps, args.progressive_kd_steps >= 1, "an integer >= 1",
         "e.g. --progressive-kd-steps 150"),
    ]
    if args.target_macs is not None:
        checks.append(("--target-macs", args.target_macs, 0 < args.target_macs <= 1, "a MAC fraction in (0, 1]",
                       "e.g. --target-macs 0.5"))
    if args.budget_ms is not None:
        checks.append(("--budget-ms", args.budget_ms, args.budget_ms > 0, "a latency in ms > 0", "e.g. --budget-ms 40"))
    if args.int8_sensitivity is not None:
        checks.append(("--int8-sensitivity", args.int8_sensitivity, args.int8_sensitivity >= 0,
                       "PCK points >= 0", "e.g. --int8-sensitivity 1.0"))
    for opt, val, ok, valid, fix in checks:
        if not ok:
            raise _bad(opt, val, valid, fix)


def _check_paths(args) -> None:
    """Input files exist and are readable; the output folder can be written."""
    from edgepose.errors import ConfigError

    for flag, path in (("--teacher", args.teacher), ("--model", args.model), ("--detector", args.detector),
                       ("--baseline", args.baseline), ("--val-data", args.val_data)):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{flag} file not found: {path!r}; pass the path of an existing model file"
                              if flag != "--val-data" else
                              f"{flag} file not found: {path!r}; pass a COCO person-keypoints JSON")
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{flag} file {path!r} is not readable; fix its permissions (chmod a+r)")
    if args.val_images and not os.path.isdir(args.val_images):
        raise ConfigError(f"--val-images folder not found: {args.val_images!r}; pass the folder the JSON's "
                          "file_name entries are relative to")
    for d in args.data:
        if not os.path.exists(d):
            raise ConfigError(f"--data path not found: {d!r}; pass existing folders / files of training media")
    if not args.data and not os.path.isdir(args.data_root):
        raise ConfigError(f"--data-root folder not found: {args.data_root!r}; pass the assets data folder "
                          "(training pool + evaluation sets), set EDGEPOSE_DATA, or give --data")
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {args.out!r} is a file, not a folder; pass a new or existing folder")
    parent = out
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {args.out!r} cannot be written ({parent!r} is not writable); pass a writable "
                          "folder")


def _check_extras() -> None:
    """The compress extra (torch, torch-pruning, onnx) is importable; else one line naming the pip command."""
    from edgepose._optional import require

    for mod, pkg in (("torch", "torch"), ("torch_pruning", "torch-pruning"), ("onnx", "onnx"),
                     ("onnxruntime", "onnxruntime")):
        require(mod, "compress", package=pkg)


def run(args) -> int:
    from edgepose.errors import ConfigError

    from edgepose.compression.methods import check_method

    _check_ranges(args)
    check_method(args.method, detector=args.detector)
    _check_paths(args)
    _check_extras()
    budget = {}
    if args.device:
        from edgepose.profiles import load_profile

        load_profile(args.device)  # a bad name fails here, before any labelling
    if args.host_profile:
        from edgepose.profiles import load_profile

        if not load_profile(args.host_profile).is_measured:
            raise ConfigError(f"--host-profile {args.host_profile!r} is not a measured profile; write one with "
                              "'edgepose profile' or leave the option out to probe this host")
    if args.device or args.budget_ms is not None:
        budget = {"budget_ms": args.budget_ms, "budget_fraction": args.budget_fraction, "threads": args.threads}
        if args.host_profile:
            budget["host"] = args.host_profile
        if args.target_macs is not None:
            log.warning("--target-macs is ignored: the budget search chooses the pruning ratio")
    from edgepose.compression.pipeline import CompressConfig, compress

    # onnxruntime.quantization logs this advice on the root logger once per quantisation (~80 times)
    logging.getLogger().addFilter(lambda rec: not str(rec.msg).startswith("Please consider"))
    prune = {"importance": args.importance, "ratio": args.ratio, "global_pruning": args.global_pruning}
    if args.target_macs is not None:
        prune["target_macs"] = args.target_macs
    try:
        cfg = CompressConfig(teacher=args.teacher, model=args.model, out=args.out, data=tuple(args.data),
                             cache_dir=args.cache_dir, detector=args.detector, data_root=args.data_root,
                             prune=prune, distill={"steps": args.steps, "lr": args.lr},
                             quantize={"calibration": args.calibration}, evaluate=not args.no_eval,
                             baseline=args.baseline, threads=args.threads, device=args.device, budget=budget,
                             floor=args.floor, val_data=args.val_data, val_images=args.val_images,
                             student=True if args.student else (False if args.no_student else None),
                             progressive=args.progressive, train_pool=args.train_pool,
                             progressive_cfg={"max_steps": args.progressive_steps,
                                              "step_ratio": args.progressive_step_ratio,
                                              "kd_steps": args.progressive_kd_steps},
                             int8_mixed=not args.no_int8_mixed,
                             sensitivity_gate=args.int8_sensitivity,
                             tflite=not args.no_tflite, tflite_qat_steps=args.tflite_qat_steps, method=args.method)
        rep = compress(cfg, progress=True)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from exc
    with open(os.path.join(args.out, "report.md")) as fh:
        print(fh.read())
    print(f"recommended: {rep['recommended']}")
    return 0
