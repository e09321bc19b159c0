"""Compress MoveNet Lightning with Thunder as teacher and report accuracy + interleaved latency.

Run from the project root (needs the compress extra and ../shared/assets):

    python benchmarks/compress_lightning.py --out runs/compress_lightning --ratio 0.3 --steps 250

Writes report.md / report.json / distill_loss.png / prune_plan.json / student_{fp32,int8}.onnx
and manifest.json under --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edgepose.compression.pipeline import CompressConfig, compress

ASSETS = Path(__file__).resolve().parent.parent.parent / "shared" / "assets"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/compress_lightning")
    p.add_argument("--ratio", type=float, default=0.3, help="channel ratio removed per group")
    p.add_argument("--importance", default="content", choices=["magnitude", "taylor", "content"])
    p.add_argument("--global-pruning", action="store_true", help="rank channels across layers")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    m = ASSETS / "models" / "movenet"
    cfg = CompressConfig(teacher=str(m / "movenet_thunder_fp32.onnx"), model=str(m / "movenet_lightning_fp32.onnx"),
                         out=a.out, detector=str(m / "movenet_multipose_lightning_fp32.onnx"),
                         data_root=str(ASSETS / "data"), baseline=str(m / "movenet_lightning_int8.tflite"),
                         prune={"ratio": a.ratio, "importance": a.importance, "global_pruning": a.global_pruning},
                         distill={"steps": a.steps, "lr": a.lr}, quantize={"calibration": a.calibration},
                         threads=a.threads)
    report = compress(cfg)
    sys.stdout.write((Path(a.out) / "report.md").read_text())
    sys.stdout.write(json.dumps(report["speedup_vs_original"], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
