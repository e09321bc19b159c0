"""``edgepose train``: run a training recipe on the one trainer (CPU, CUDA or MPS; N processes via torchrun).

    edgepose train smoke --out runs/train_smoke --steps 4
    edgepose train smoke --out runs/train_smoke2 --steps 4 --nproc 2 --train-device cpu
    edgepose train feature-kd --out runs/long_kd --resume
    edgepose train dkd --out runs/dkd              # DKD on teacher-labelled clips (dkd-per-frame: its baseline)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from edgepose.cli import _args

NAME = "train"
HELP = "train a compression recipe (KD, feature KD, OKDHP, ViT, DKD, students) with the one trainer"

DEVICES = ("auto", "cpu", "cuda", "mps")


def add_arguments(p):
    p.add_argument("recipe", help="a shipped recipe name (smoke, kd, feature-kd, okdhp, vit, dkd, dkd-per-frame, "
                                  "student-heatmap, student-simcc, student-rle) or a recipe YAML file")
    p.add_argument("--out", required=True, type=_args.output_dir,
                   help="folder for checkpoints, log.jsonl, loss.png and summary.json")
    p.add_argument("--steps", type=_args.int_range(1), help="optimiser steps (overrides the recipe's schedule)")
    p.add_argument("--nproc", type=_args.int_range(1, 64), default=1,
                   help="processes (DistributedDataParallel through torchrun; one per GPU)")
    p.add_argument("--train-device", choices=DEVICES, default="auto",
                   help="auto: CUDA, then Apple MPS, then CPU")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--assets", type=_args.existing_dir("assets folder"),
                   help="the assets folder the recipe's paths are relative to (default: $EDGEPOSE_ASSETS)")


def _torchrun(args) -> int:
    """Start ``args.nproc`` copies of this command under torchrun (it manages the processes)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "edgepose.cli.main", "train", args.recipe, "--out", args.out, "--train-device", args.train_device]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    if args.resume:
        cmd.append("--resume")
    if args.assets:
        cmd += ["--assets", args.assets]
    print(f"edgepose train: starting {args.nproc} processes: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    return subprocess.call(cmd)


def run(args) -> int:
    from edgepose.compression.train.recipes import load_recipe

    recipe = load_recipe(args.recipe)  # a bad recipe fails here, before torch or torchrun start
    _args.check_extra("torch", "compress", "torch", "edgepose train")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _torchrun(args)
    from edgepose.compression.train.dist import pick_device

    pick_device(args.train_device)  # an absent device is one line, not a traceback per rank
    from edgepose.compression.train.recipes import run_recipe

    res = run_recipe(recipe, args.out, steps=args.steps, device=args.train_device, resume=args.resume,
                     assets=args.assets)
    if int(os.environ.get("RANK", "0")) == 0:
        s = res.summary()
        print(json.dumps({k: s[k] for k in ("steps", "world", "device", "samples_per_s", "final_loss", "best")}))
        print(f"wrote {args.out}/log.jsonl, loss.png, summary.json and {len(res.checkpoints)} checkpoint(s)")
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0
