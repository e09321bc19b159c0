"""PCK-vs-latency frontier of progressive, latency-aware pruning (issue 20, item 2).

Runs :func:`edgepose.compression.progressive.run_progressive` on one label cache (the training
split of its files only) and scores every step's fp32 and int8 ONNX on the 161-person evaluation
set (protocol crops). Compare two pools at equal steps by running it twice with the same options:

    nice python benchmarks/progressive_frontier.py --pool old --name prog_old
    nice python benchmarks/progressive_frontier.py --pool train_pool --name prog_new

``--pool`` labels the material with MoveNet Thunder on first use (cached under --cache-dir):
``old`` = the shippable sources (train_extra allow-list + training video frames), ``train_pool`` =
every crop of data/train_pool (research use: three of its sources are research-only / unclear),
``train_pool_shippable`` = its licence-clean crops. ``--labels`` takes an existing cache instead.

Latency of the points vs the official int8 TFLite: benchmarks/latency_ratio.py, one interleaved run.
Writes OUT/NAME.json and .md (default benchmarks/results/) and the models under --work.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

from _common import add_assets_arg, add_out_arg, run_meta, write_report

from edgepose.assets import assets_dir


def _label(pool: str, assets: Path, cache_dir: str, threads: int):
    from edgepose.compression.data import LabelConfig, label_media
    from edgepose.compression.data.shippable import shippable_pool, shippable_sources
    from edgepose.compression.data.sources import pool_sources

    data = assets / "data"
    items = {"old": shippable_sources, "train_pool": pool_sources, "train_pool_shippable": shippable_pool}[pool](data)
    cfg = LabelConfig(teacher=str(assets / "models/movenet/movenet_thunder_fp32.onnx"))
    return label_media(items, cfg, cache_dir, progress=False, num_threads=threads)


def main(argv=None) -> int:
    from edgepose.compression import gate
    from edgepose.compression.data.labels import load_labels
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.pipeline import _split_crops
    from edgepose.compression.progressive import ProgressiveConfig, run_progressive

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_assets_arg(p)
    add_out_arg(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", help="label cache .npz (training material only)")
    src.add_argument("--pool", choices=["old", "train_pool", "train_pool_shippable"],
                     help="training material to label (see the module docstring)")
    p.add_argument("--cache-dir", default="runs/cache")
    p.add_argument("--work", default="runs/progressive", help="folder for the step models")
    p.add_argument("--name", default="progressive_frontier")
    p.add_argument("--steps", type=int, default=4, help="pruning steps")
    p.add_argument("--kd-steps", type=int, default=60, help="distillation steps after each pruning step")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--probe-rounds", type=int, default=10)
    p.add_argument("--step-ratio", type=float, default=0.1)
    p.add_argument("--floor", type=float, default=66.5, help="PCK floor of the int8 on the 161-person set")
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    assets = Path(a.assets) if a.assets else assets_dir(check=False)
    data_root = str(assets / "data")
    net = import_movenet(str(assets / "models/movenet/movenet_lightning_fp32.onnx"))
    labels = load_labels(a.labels) if a.labels else _label(a.pool, assets, a.cache_dir, a.threads)
    tr_idx, _ = labels.split(0.2, 0)
    calib, _ = _split_crops(labels, tr_idx, net.input_size[0], 64)
    cfg = ProgressiveConfig(step_ratio=a.step_ratio, max_steps=a.steps, kd_steps=a.kd_steps, patience=a.patience, lr=a.lr,
                            probe_rounds=a.probe_rounds,
                            threads=a.threads)

    def score(path):
        return {gate.EVAL_SET: round(gate.score_eval_set(path, data_root, a.threads)["pck_torso"], 2)}

    work = Path(a.work) / a.name
    points = run_progressive(net, labels, tr_idx, cfg, work, score=score, calibration=calib,
                             floor_ok=lambda s: s[gate.EVAL_SET] >= a.floor, progress_log=print)
    rows = [asdict(pt) for pt in points]
    md = ["| step | stages pruned | MACs | PCK int8 | PCK fp32 | passes | s |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['step']} | {', '.join(r['stages'])} | {100 * r['macs_fraction']:.0f} % | "
           f"{r['scores_int8'][gate.EVAL_SET]:.1f} | {r['scores_fp32'].get(gate.EVAL_SET, float('nan')):.1f} | {r['passes']} | "
           f"{r['seconds']:.0f} |" for r in rows]
    write_report(a.out, a.name, {"meta": run_meta(), "labels": labels.path, "n_train": len(tr_idx), "config": cfg.to_dict(),
                             "points": rows}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
