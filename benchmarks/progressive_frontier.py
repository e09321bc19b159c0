"""PCK-vs-latency frontier of progressive, latency-aware pruning (issue 20, item 2).

Runs :func:`edgepose.compression.progressive.run_progressive` on one label cache (the training
split of its files only) and scores every step's fp32 and int8 ONNX on the 161-person evaluation
set (protocol crops). Compare two pools at equal steps by running it twice with the same options:

    nice python benchmarks/progressive_frontier.py --labels runs/cache/labels-OLD.npz --name prog_old
    nice python benchmarks/progressive_frontier.py --labels runs/cache/labels-NEW.npz --name prog_new

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


def main(argv=None) -> int:
    from edgepose.compression import gate
    from edgepose.compression.data.labels import load_labels
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.pipeline import _split_crops
    from edgepose.compression.progressive import ProgressiveConfig, run_progressive

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_assets_arg(p)
    add_out_arg(p)
    p.add_argument("--labels", required=True, help="label cache .npz (training material only)")
    p.add_argument("--work", default="runs/progressive", help="folder for the step models")
    p.add_argument("--name", default="progressive_frontier")
    p.add_argument("--steps", type=int, default=4, help="pruning steps")
    p.add_argument("--kd-steps", type=int, default=120, help="distillation steps after each pruning step")
    p.add_argument("--step-ratio", type=float, default=0.1)
    p.add_argument("--floor", type=float, default=66.5, help="PCK floor of the int8 on the 161-person set")
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    assets = Path(a.assets) if a.assets else assets_dir(check=False)
    data_root = str(assets / "data")
    net = import_movenet(str(assets / "models/movenet/movenet_lightning_fp32.onnx"))
    labels = load_labels(a.labels)
    tr_idx, _ = labels.split(0.2, 0)
    calib, _ = _split_crops(labels, tr_idx, net.input_size[0], 64)
    cfg = ProgressiveConfig(step_ratio=a.step_ratio, max_steps=a.steps, kd_steps=a.kd_steps, patience=a.patience,
                            threads=a.threads)

    def score(path):
        return {gate.EVAL_SET: round(gate.score_eval_set(path, data_root, a.threads)["pck_torso"], 2)}

    work = Path(a.work) / a.name
    points = run_progressive(net, labels, tr_idx, cfg, work, score=score, calibration=calib,
                             floor_ok=lambda s: s[gate.EVAL_SET] >= a.floor, progress_log=print)
    rows = [asdict(pt) for pt in points]
    md = ["| step | stages pruned | MACs | PCK int8 | PCK fp32 | passes | s |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['step']} | {', '.join(r['stages'])} | {100 * r['macs_fraction']:.0f} % | "
           f"{r['scores_int8'][gate.EVAL_SET]:.1f} | {r['scores_fp32'][gate.EVAL_SET]:.1f} | {r['passes']} | "
           f"{r['seconds']:.0f} |" for r in rows]
    write_report(a.out, a.name, {"meta": run_meta(), "labels": a.labels, "n_train": len(tr_idx), "config": cfg.to_dict(),
                             "points": rows}, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
