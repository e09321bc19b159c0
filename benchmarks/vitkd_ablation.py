"""ViTKD ablation: heatmap-only KD vs ViTKD (+ heatmap KD) on the same tiny ViT student.

Run from the project root (needs the compress extra and ../shared/assets):

    python benchmarks/vitkd_ablation.py                      # teacher, 2 arms x 2 seeds, report
    python benchmarks/vitkd_ablation.py --stage teacher      # only the ViT teacher
    python benchmarks/vitkd_ablation.py --stage student --arm vitkd --seed 1   # one run
    python benchmarks/vitkd_ablation.py --stage report       # tables from the finished runs

1. Training data: MoveNet Thunder pseudo-labels of the shippable training pool
   (``training_sources``; cached in runs/cache by content hash). The evaluation set is never read
   for training.
2. The ViT teacher (a larger ViT, briefly trained) is itself distilled from Thunder's heatmaps.
3. Each arm trains the same student (same init per seed, same data order, same steps): ``heatmap``
   = heatmap KD from Thunder's maps; ``vitkd`` = the same + ViTKD mimic / generation from the ViT
   teacher. Every model is exported to ONNX (student card) and scored on the 161-person held-out
   set (PCK@0.2 x torso, ALL and HARD) through the runtime.

Writes runs/vitkd/* (checkpoints, ONNX, per-run JSON) and benchmarks/results/vitkd_ablation.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgepose.compression.data import LabelConfig, label_media, training_sources
from edgepose.compression.distill.vitkd import ViTKDConfig, ViTTrainConfig, train_vit
from edgepose.compression.students.vit import ViTPose, ViTPoseConfig, export_heatmap_student

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"
log = logging.getLogger("vitkd_ablation")

STUDENT = ViTPoseConfig(dim=64, depth=4, heads=2, head_channels=64)
TEACHER = ViTPoseConfig(dim=128, depth=6, heads=4, head_channels=96)
ARMS = ("heatmap", "vitkd")


def _labels():
    m = ASSETS / "models" / "movenet"
    cfg = LabelConfig(teacher=str(m / "movenet_thunder_fp32.onnx"),
                      detector=str(m / "movenet_multipose_lightning_fp32.onnx"))
    return label_media(training_sources(ASSETS / "data"), cfg, ROOT / "runs" / "cache", num_threads=1)


def _evaluate(onnx_path: Path) -> dict:
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    with load_model(onnx_path, num_threads=1) as model:
        rep = evaluate(model, root=ASSETS / "data", progress=False)
    d = rep.to_dict()
    return {"pck_all": rep.row("ALL").pck_torso, "pck_hard": rep.row("HARD").pck_torso,
            "ms_per_person": d["ms_per_person"], "rows": d["rows"]}


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def stage_teacher(out: Path, labels, steps: int) -> ViTPose:
    ckpt = out / "teacher.pt"
    torch.manual_seed(0)
    teacher = ViTPose(TEACHER)
    if ckpt.is_file():
        teacher.load_state_dict(torch.load(ckpt))
        return teacher.eval()
    cfg = ViTTrainConfig(steps=steps, seed=0, threads=1)
    rep = train_vit(teacher, labels, cfg)
    torch.save(teacher.state_dict(), ckpt)
    onnx = export_heatmap_student(teacher, out / "teacher.onnx")
    res = {"name": "vit_teacher", "arch": TEACHER.to_dict(), "params": _params(teacher), "train": cfg.to_dict(),
           "seconds": rep.seconds, "val": rep.val, "parity": onnx["max_abs_diff"], **_evaluate(out / "teacher.onnx")}
    (out / "teacher.json").write_text(json.dumps(res, indent=1, default=str))
    log.info("teacher: PCK ALL %.1f HARD %.1f (%.0f s)", res["pck_all"], res["pck_hard"], rep.seconds)
    return teacher.eval()


def stage_student(out: Path, labels, teacher, arm: str, seed: int, steps: int) -> dict:
    torch.manual_seed(seed)
    student = ViTPose(STUDENT)  # same init for both arms of a seed
    cfg = ViTTrainConfig(steps=steps, seed=seed, threads=1)
    kd = ViTKDConfig() if arm == "vitkd" else None
    rep = train_vit(student, labels, cfg, teacher=teacher if kd else None, vitkd=kd)
    path = out / f"{arm}_s{seed}.onnx"
    onnx = export_heatmap_student(student, path, extra_metadata={"recipe": json.dumps({"arm": arm, "seed": seed})})
    res = {"arm": arm, "seed": seed, "params": _params(student), "train": cfg.to_dict(),
           "vitkd": kd.to_dict() if kd else None, "seconds": rep.seconds, "val_steps": rep.val_steps,
           "val": rep.val, "final_terms": {k: float(np.mean(v[-25:])) for k, v in rep.terms.items()},
           "parity": onnx["max_abs_diff"], **_evaluate(path)}
    (out / f"{arm}_s{seed}.json").write_text(json.dumps(res, indent=1, default=str))
    log.info("%s seed %d: PCK ALL %.1f HARD %.1f (%.0f s)", arm, seed, res["pck_all"], res["pck_hard"], rep.seconds)
    return res


def stage_report(out: Path, seeds: list[int], results_dir: Path) -> str:
    teacher = json.loads((out / "teacher.json").read_text())
    runs = {(a, s): json.loads((out / f"{a}_s{s}.json").read_text()) for a in ARMS for s in seeds
            if (out / f"{a}_s{s}.json").is_file()}
    lines = ["# ViTKD ablation: heatmap-only KD vs ViTKD + heatmap KD (same ViT student)", "",
             f"Held-out set: 161 people of coco_mini + mmpose_mini, PCK@0.2 x torso (13 joints), GT crops, "
             f"ONNX Runtime 1 thread. Student {STUDENT.to_dict()} ({runs and next(iter(runs.values()))['params']} "
             f"params); equal budget: {next(iter(runs.values()))['train']['steps'] if runs else '?'} steps x batch "
             f"16 per arm, same init and data order per seed. Training data: Thunder pseudo-labels of the "
             "shippable pool (never the evaluation set).", "",
             "| model | seed | PCK ALL | PCK HARD | val heatmap-KD loss | train s |", "|---|---:|---:|---:|---:|---:|",
             "| MoveNet Thunder (label source, reference) | - | 75.7 | - | - | - |",
             f"| ViT teacher ({teacher['params']} params, from Thunder) | 0 | {teacher['pck_all']:.1f} | "
             f"{teacher['pck_hard']:.1f} | {teacher['val'][-1]:.4f} | {teacher['seconds']:.0f} |"]
    summary = {}
    for a in ARMS:
        rs = [runs[(a, s)] for s in seeds if (a, s) in runs]
        for r in rs:
            lines.append(f"| student, {a} | {r['seed']} | {r['pck_all']:.1f} | {r['pck_hard']:.1f} | "
                         f"{r['val'][-1]:.4f} | {r['seconds']:.0f} |")
        if rs:
            summary[a] = {"pck_all": float(np.mean([r["pck_all"] for r in rs])),
                          "pck_hard": float(np.mean([r["pck_hard"] for r in rs])),
                          "val": float(np.mean([r["val"][-1] for r in rs])), "seeds": [r["seed"] for r in rs]}
            lines.append(f"| **student, {a}, mean of {len(rs)}** | | **{summary[a]['pck_all']:.1f}** | "
                         f"**{summary[a]['pck_hard']:.1f}** | {summary[a]['val']:.4f} | |")
    if len(summary) == 2:
        d = summary["vitkd"]["pck_all"] - summary["heatmap"]["pck_all"]
        lines += ["", f"ViTKD - heatmap-only: {d:+.1f} PCK points (ALL, mean of seeds "
                      f"{summary['vitkd']['seeds']})."]
    lines += ["", f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, torch {torch.__version__}, "
                  f"1 thread per run; {time.strftime('%Y-%m-%d')}."]
    md = "\n".join(lines) + "\n"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "vitkd_ablation.md").write_text(md)
    (results_dir / "vitkd_ablation.json").write_text(json.dumps(
        {"teacher": teacher, "runs": [runs[k] for k in sorted(runs)], "summary": summary,
         "student": STUDENT.to_dict()}, indent=1, default=str))
    return md


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", default="all", choices=["teacher", "student", "report", "all"])
    p.add_argument("--arm", choices=ARMS, help="with --stage student: one arm (default both)")
    p.add_argument("--seed", type=int, help="with --stage student: one seed (default 0 and 1)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--teacher-steps", type=int, default=400)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--out", default=str(ROOT / "runs" / "vitkd"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.stage != "report":
        labels = _labels()
        teacher = stage_teacher(out, labels, a.teacher_steps)
        if a.stage in ("student", "all"):
            for s in ([a.seed] if a.seed is not None else a.seeds):
                for arm in ([a.arm] if a.arm else ARMS):
                    stage_student(out, labels, teacher, arm, s, a.steps)
    if a.stage in ("report", "all"):
        sys.stdout.write(stage_report(out, a.seeds, Path(a.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
