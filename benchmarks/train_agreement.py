"""Before / after the move onto the one trainer: the same runs (equal steps, seed, data) through the
former loops (``git archive REV compression`` unpacked into a temp folder; ``--old-rev``, default d97cdc9, the last commit before the trainer) and
through the current code, compared step by step.

    python benchmarks/train_agreement.py --labels runs/cache/labels-*.npz --steps 8 --out runs/train_agreement.json

Runs: heatmap KD (``distill``: imported MoveNet Lightning on the Thunder labels), a heatmap student
(``train_student.train`` + ``HeatmapKD``), the long-KD recipe (``train_long_kd``, fixed step
count; its schedule follows the clock, so only its warm-up steps can agree exactly), a tiny ViT
(``train_vit``) and DKD's per-frame pre-training (``pretrain_frames``); and, from
``_train_agreement_more.py``: OKDHP (the former ``train_student`` path, and against the okdhp
recipe's ``build`` + ``Trainer``, with and without DataLoader workers), DKD's clip phase
(``train_dkd``, both arms, on a ClipSet built in memory from the label crops), the dkd recipe's
two phases against the former pretrain + clip order, and the temporal models: learned-gain One
Euro, smoother, keyframe recovery, fixed-lag FIR taps (synthetic tracks; the training video list
is not read). Reports the largest absolute difference of the per-step training loss, of the
held-out losses and (the newer runs) of the trained weights (``params``). QAT
(``quantize/qat.py``) is not run: it needs litert-torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from _train_agreement_more import RUNS as MORE_RUNS

ROOT = Path(__file__).resolve().parent.parent
BATCH = 8  # crops per step of the student run (--student-batch)


def _old_package(rev: str, dest: Path):
    """The ``compression`` package at ``rev`` importable as ``oldcompression``."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "compression"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    pkg = dest / "oldcompression"
    (dest / "compression").rename(pkg)
    spec = importlib.util.spec_from_file_location("oldcompression", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["oldcompression"] = mod  # its submodules import through the package's __path__
    spec.loader.exec_module(mod)
    return mod


def _assets() -> Path:
    from edgepose.assets import assets_dir

    return assets_dir(check=False)


def run_distill(pkg: str, labels, steps: int) -> dict:
    from edgepose.compression.importer import import_movenet

    m = importlib.import_module(f"{pkg}.distill.distill")
    torch.manual_seed(0)
    net = import_movenet(str(_assets() / "models/movenet/movenet_lightning_fp32.onnx"))
    cfg = m.DistillConfig(steps=steps, batch_size=8, eval_every=max(1, steps // 2), warmup=2, threads=1)
    rep = m.distill(net, labels, cfg, progress=False)
    return {"train": rep.train, "val": rep.val, "val_px": rep.val_px}


def run_student(pkg: str, labels, steps: int) -> dict:
    from edgepose.compression.students import HeatmapKD, StudentConfig, StudentNet

    m = importlib.import_module(f"{pkg}.train_student")
    m.seed_everything(0)
    scfg = StudentConfig(input_size=128, width=0.5)
    net = StudentNet(scfg)
    cls = getattr(m, "StudentTrainConfig", None) or m.TrainConfig  # renamed after the move
    cfg = cls(steps=steps, batch_size=BATCH, warmup=2, eval_every=max(1, steps // 2), threads=1)
    std = np.asarray(scfg.std, np.float32)
    rep = m.train(HeatmapKD(net), labels, cfg, input_size=128, scale=1 / std, shift=-np.asarray(scfg.mean) / std,
                  progress=False)
    return {"train": rep.train, "val": rep.val}


def run_long_kd(pkg: str, labels, steps: int) -> dict:
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.prune import PruneConfig, prune

    m = importlib.import_module(f"{pkg}.distill.long_kd")
    net = import_movenet(str(_assets() / "models/movenet/movenet_lightning_fp32.onnx"))
    torch.manual_seed(0)
    student = prune(net, PruneConfig(importance="magnitude", target_macs=0.5)).model
    with tempfile.TemporaryDirectory() as d:
        s = m.train_long_kd(student, net, labels, m.LongKDConfig(minutes=60, max_steps=steps, ckpt_every=steps,
                                                                  batch_size=8), d)
        losses = [json.loads(x)["loss"] for x in (Path(d) / "log.jsonl").read_text().splitlines()
                  if "event" not in json.loads(x)]
    return {"train": losses, "val": s["val"]}


def run_vit(pkg: str, labels, steps: int) -> dict:
    from edgepose.compression.students.vit import ViTPose, ViTPoseConfig

    m = importlib.import_module(f"{pkg}.distill.vitkd")
    torch.manual_seed(0)
    net = ViTPose(ViTPoseConfig(dim=64, depth=3, heads=4))
    rep = m.train_vit(net, labels, m.ViTTrainConfig(steps=steps, batch_size=8, warmup=2, eval_every=max(1, steps // 2),
                                                    threads=1), progress=False)
    return {"train": rep.train, "val": rep.val, "val_agreement": rep.terms["val_agreement"]}


def run_dkd_pretrain(pkg: str, labels, steps: int) -> dict:
    from edgepose.compression.students.dkd_model import DKDConfig, DKDPose

    m = importlib.import_module(f"{pkg}.distill.dkd")
    torch.manual_seed(0)
    rep = m.pretrain_frames(DKDPose(DKDConfig()), labels, steps=steps, batch_size=8, threads=1, progress=False)
    return {"train": rep.train}


RUNS = {"heatmap_kd": run_distill, "student_heatmap": run_student, "long_kd": run_long_kd, "vit": run_vit,
        "dkd_pretrain": run_dkd_pretrain, **MORE_RUNS}


def main(argv=None) -> int:
    from edgepose.compression.data.labels import load_labels

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", required=True, help="label cache .npz (training crops, never the evaluation set)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--old-rev", default="d97cdc9", help="the commit with the former loops (default: the last before the trainer)")
    p.add_argument("--student-batch", type=int, default=8, help="a large batch crosses epochs in few steps")
    p.add_argument("--out")
    a = p.parse_args(argv)
    global BATCH
    BATCH = a.student_batch
    torch.set_num_threads(1)
    labels = load_labels(a.labels)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        _old_package(a.old_rev, Path(tmp))
        for name in a.runs.split(","):
            old = RUNS[name]("oldcompression", labels, a.steps)
            new = RUNS[name]("edgepose.compression", labels, a.steps)
            row = {"steps": old.pop("steps", a.steps)}  # a run may need more steps than --steps
            new.pop("steps", None)
            for k in old:
                o, n = np.asarray(old[k], float), np.asarray(new[k], float)
                if o.size <= 64:  # trained weights: only their difference
                    row[f"{k}_old"], row[f"{k}_new"] = o.tolist(), n.tolist()
                row[f"{k}_max_abs_diff"] = float(np.max(np.abs(o - n))) if o.shape == n.shape else None
            rows[name] = row
            print(name, {k: v for k, v in row.items() if k.endswith("diff")}, flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
