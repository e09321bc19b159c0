"""Students ablation: plain KD vs OKDHP on the same CNN student; RLE sigma vs actual error.

Run from the project root (needs the compress extra and ../shared/assets):

    python benchmarks/students_ablation.py --stage all --seeds 0 1 --tflite

Every run trains on the *shippable* material only (compression.data.shippable), pseudo-labelled
by MoveNet Thunder (cached, content-hashed, under runs/cache), at an equal budget of optimiser
steps, then is exported to ONNX, loaded through edgepose's student card and scored on the
161-person held-out evaluation set (PCK@0.2 x torso, ALL and HARD). Stages (``kd``, ``okdhp``,
``rle``, ``simcc``) each write ``runs/students/<method>_s<seed>/result.json`` and can run
separately; ``report`` gathers them into benchmarks/results/students_ablation.{json,md} and
students_curves.json (loss curves) and times the exported students (ONNX Runtime, 1 thread,
interleaved).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"
DATA = ASSETS / "data"
MODELS = ASSETS / "models" / "movenet"
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("kd", "okdhp", "rle", "simcc", "rle-unnorm")
HEAD = {"kd": "heatmap", "okdhp": "heatmap", "rle": "rle", "simcc": "simcc", "rle-unnorm": "rle"}
log = logging.getLogger("students_ablation")


def label_config():
    from edgepose.compression.data.labels import LabelConfig

    # Denser than the toolkit default (stride 10, 40 frames/video): the shippable pool is small.
    return LabelConfig(teacher=str(MODELS / "movenet_thunder_fp32.onnx"),
                       detector=str(MODELS / "movenet_multipose_lightning_fp32.onnx"),
                       video_stride=2, max_frames_per_video=150)


def load_shippable_labels(cache: str):
    from edgepose.compression.data.labels import label_media
    from edgepose.compression.data.shippable import shippable_sources

    return label_media(shippable_sources(DATA), label_config(), cache, progress=False, num_threads=1)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def sigma_error_stats(report) -> dict:
    """RLE: per labelled shared joint, predicted sigma (1 - score) vs actual error, crop-normalised."""
    from edgepose.types import SHARED13

    sig, err, sig_px, err_px = [], [], [], []
    for r in report.results:
        j = [k for k in SHARED13 if r.person.keypoints[k, 2] > 0]
        e = np.linalg.norm(r.keypoints[j] - r.person.keypoints[j, :2], axis=1)
        s = 1.0 - r.scores[j]  # decode_rle: score = 1 - mean(sigma), sigma normalised to the crop
        side = r.person.roi.width
        sig += list(s)
        err += list(e / side)
        sig_px += list(s * side)
        err_px += list(e)
    sig, err = np.array(sig), np.array(err)
    return {"joints": len(sig), "spearman_crop_normalised": round(spearman(sig, err), 4),
            "spearman_pixels": round(spearman(np.array(sig_px), np.array(err_px)), 4),
            "median_sigma": round(float(np.median(sig)), 4), "median_error": round(float(np.median(err)), 4)}


def run_one(method: str, seed: int, a) -> dict:
    import torch

    from edgepose.compression.data.augment import AugmentConfig
    from edgepose.compression.distill.okdhp import OKDHP, OKDHPConfig
    from edgepose.compression.students import (HeatmapKD, RLEObjective, SimCCKD, StudentConfig, StudentNet,
                                               count_parameters, export_onnx_student)
    from edgepose.compression.train_student import TrainConfig, make_datasets, seed_everything, train
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    torch.set_num_threads(1)
    labels = load_shippable_labels(a.cache)
    head = HEAD[method]
    scfg = StudentConfig(input_size=a.size, head=head, width=a.width)
    aug = AugmentConfig(rotate_deg=a.rotate, cutout=a.cutout, blur=0.1)
    tcfg = TrainConfig(steps=a.steps, batch_size=a.batch, lr=a.lr, seed=seed, eval_every=max(1, a.steps // 5),
                       augment=aug)
    seed_everything(seed)
    okcfg = OKDHPConfig(branches=tuple((1.0, 1.0) for _ in range(a.branches)), loss=a.hm_loss,
                        w_spatial=a.w_spatial)
    if method == "okdhp":
        objective = OKDHP(scfg, okcfg)
    elif method == "kd":
        objective = HeatmapKD(StudentNet(scfg), kind=a.hm_loss, w_spatial=a.w_spatial)
    else:
        kw = {"normalise": False} if method == "rle-unnorm" else {}  # rle-unnorm: the paper's loss, no log s
        objective = {"rle": RLEObjective, "simcc": SimCCKD}[head](StudentNet(scfg), **kw)
    scale = [1.0 / s for s in scfg.std]
    shift = [-m / s for m, s in zip(scfg.mean, scfg.std)]
    train_ds, val_ds = make_datasets(labels, tcfg, input_size=a.size, scale=scale, shift=shift)
    rep = train(objective, labels, tcfg, input_size=a.size, scale=scale, shift=shift, progress=a.progress,
                datasets=(train_ds, val_ds))
    extra = {}
    if method == "okdhp":
        loader = torch.utils.data.DataLoader(val_ds, batch_size=a.batch)
        student, best, losses = objective.best_student(loader)
        extra = {"branch_val_losses": [round(v, 4) for v in losses], "exported_branch": best,
                 "train_params": count_parameters(objective)}
    else:
        student = objective.student
    out = Path(a.out) / f"{method}_s{seed}"
    crops = [val_ds.raw(i)[0] for i in range(min(4, len(val_ds)))]
    prov = {"method": method, "seed": seed, "train": tcfg.to_dict(), "labels": Path(labels.path).name,
            "data": "shippable (compression.data.shippable)", "teacher": "MoveNet Thunder fp32 (Apache-2.0)"}
    if method == "okdhp":
        prov["okdhp"] = okcfg.to_dict()
    exp = export_onnx_student(student, out / "model.onnx", check_crops=crops, provenance=prov)
    torch.save({"config": student.cfg.to_dict(), "state_dict": student.state_dict(), "provenance": prov},
               out / "student.pt")
    with load_model(str(out / "model.onnx")) as model:
        ev = evaluate(model, root=DATA, progress=False)
    res = {"method": method, "seed": seed, "head": head, "steps": a.steps, "batch": a.batch,
           "input_size": a.size, "params": count_parameters(student), "train_seconds": round(rep.seconds, 1),
           "final_val_loss": rep.val[-1], "pck_all": ev.row("ALL").pck_torso, "pck_hard": ev.row("HARD").pck_torso,
           "rows": ev.to_dict()["rows"], "onnx": exp.to_dict(), **extra}
    res["onnx"].pop("metadata")
    if head == "rle":
        res["sigma_vs_error"] = sigma_error_stats(ev)
    k = max(1, len(rep.train) // 100)
    res["curve"] = {"steps": rep.steps[k - 1::k], "train": [round(float(np.mean(rep.train[i:i + k])), 4)
                                                             for i in range(0, len(rep.train), k)],
                    "val_steps": rep.val_steps, "val": [round(v, 4) for v in rep.val]}
    (out / "result.json").write_text(json.dumps(res, indent=1))
    log.info("%s seed %d: PCK ALL %.1f HARD %.1f (%.0fs)", method, seed, res["pck_all"], res["pck_hard"],
             rep.seconds)
    return res


def export_tflite(out_dir: Path, run: dict) -> dict:
    """Re-export a trained run's student to TFLite (litert-torch) with a parity check on real crops."""
    import torch

    from edgepose.compression.students import StudentConfig, StudentNet, export_tflite_student

    ck = torch.load(out_dir / "student.pt", weights_only=False)
    net = StudentNet(StudentConfig.from_dict(ck["config"]))
    net.load_state_dict(ck["state_dict"])
    labels = load_shippable_labels("runs/cache")
    from edgepose.compression.data.dataset import calibration_crops

    crops = calibration_crops(labels, 4, out_size=net.cfg.input_size)
    res = export_tflite_student(net, out_dir / "model.tflite", check_crops=crops, provenance=ck["provenance"])
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    with load_model(res.path) as model:
        ev = evaluate(model, root=DATA, progress=False)
    d = res.to_dict()
    d.pop("metadata")
    d["pck_all"] = ev.row("ALL").pck_torso
    d["pck_all_onnx"] = run["pck_all"]
    return d


def _runner(path: Path):
    """A zero-argument callable running ``path`` once on a fixed input (ONNX Runtime or LiteRT, 1 thread)."""
    rng = np.random.default_rng(0)
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        x = rng.integers(0, 255, d["shape"]).astype(d["dtype"])

        def run():
            it.set_tensor(d["index"], x)
            it.invoke()
        return run
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = o.inter_op_num_threads = 1
    o.log_severity_level = 3
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    dtype = np.int32 if "int32" in i.type else (np.uint8 if "uint8" in i.type else np.float32)
    feed = {i.name: rng.integers(0, 255, shape).astype(dtype)}
    return lambda: sess.run(None, feed)


def time_models(paths: dict[str, Path], rounds: int = 40, warmup: int = 5) -> dict[str, dict]:
    """Interleaved latency (A B C ... per round; 1 thread, ORT spinning off): median / p90 ms."""
    runners = {n: _runner(p) for n, p in paths.items()}
    times = {n: [] for n in runners}
    for r in range(rounds + warmup):
        for n, run in runners.items():
            t0 = time.perf_counter()
            run()
            if r >= warmup:
                times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: {"median_ms": round(float(np.median(t)), 3), "p90_ms": round(float(np.percentile(t, 90)), 3),
                "bytes": paths[n].stat().st_size} for n, t in times.items()}


def report(a) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted(Path(a.out).glob("*_s*/result.json"))]
    if not runs:
        raise SystemExit(f"no runs under {a.out}; run a training stage first")
    by = {}
    for r in runs:
        by.setdefault(r["method"], []).append(r)
    summary = {}
    for m, rs in by.items():
        summary[m] = {"seeds": [r["seed"] for r in rs], "pck_all": [round(r["pck_all"], 2) for r in rs],
                      "pck_hard": [round(r["pck_hard"], 2) for r in rs],
                      "pck_all_mean": round(float(np.mean([r["pck_all"] for r in rs])), 2),
                      "pck_hard_mean": round(float(np.mean([r["pck_hard"] for r in rs])), 2),
                      "params": rs[0]["params"], "steps": rs[0]["steps"], "batch": rs[0]["batch"],
                      "input_size": rs[0]["input_size"],
                      "train_seconds": [r["train_seconds"] for r in rs],
                      "onnx_parity_max_abs": max(r["onnx"]["max_abs"] for r in rs),
                      "onnx_parity_max_px": max(r["onnx"]["max_px"] for r in rs)}
        if HEAD[m] == "rle":
            summary[m]["spearman"] = [r["sigma_vs_error"]["spearman_crop_normalised"] for r in rs]
            summary[m]["spearman_mean"] = round(float(np.mean(summary[m]["spearman"])), 4)
            summary[m]["sigma_vs_error"] = [r["sigma_vs_error"] for r in rs]
        if m == "okdhp":
            summary[m]["exported_branch"] = [r["exported_branch"] for r in rs]
            summary[m]["branch_val_losses"] = [r["branch_val_losses"] for r in rs]
    paths = {f"{m}_s{by[m][0]['seed']}.onnx": Path(a.out) / f"{m}_s{by[m][0]['seed']}" / "model.onnx" for m in by
             if m != "rle-unnorm"}  # same graph as rle
    tflite = {}
    if a.tflite:
        for m in [m for m in by if m != "rle-unnorm"]:
            d = Path(a.out) / f"{m}_s{by[m][0]['seed']}"
            tflite[m] = export_tflite(d, by[m][0])
            paths[f"{m}_s{by[m][0]['seed']}.tflite"] = d / "model.tflite"
    paths["movenet_lightning_fp32.onnx"] = MODELS / "movenet_lightning_fp32.onnx"
    paths["movenet_lightning_int8.tflite"] = MODELS / "movenet_lightning_int8.tflite"
    latency = time_models(paths)
    out = {"summary": summary, "tflite": tflite, "latency_1thread": latency, "runs": [
        {k: v for k, v in r.items() if k != "curve"} for r in runs]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "students_ablation.json").write_text(json.dumps(out, indent=1))
    (RESULTS / "students_curves.json").write_text(json.dumps({f"{r['method']}_s{r['seed']}": r["curve"]
                                                              for r in runs}))
    (RESULTS / "students_ablation.md").write_text(to_markdown(out))
    return out


def to_markdown(out: dict) -> str:
    s = out["summary"]
    lines = ["# Students ablation (held-out evaluation set, 161 people; PCK@0.2 x torso, %)", "",
             "Trained only on shippable material (compression/data/shippable.py) with MoveNet Thunder "
             "pseudo-labels; equal budget in optimiser steps; CPU, 1 thread. "
             "Reference on the same protocol: MoveNet Thunder 75.7, Lightning int8 66.8 (ASSETS.md).", "",
             "| method | head | input | steps x batch | params (deployed) | PCK ALL mean | PCK HARD mean "
             "| per seed ALL | per seed HARD |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for m in METHODS:
        if m not in s:
            continue
        r = s[m]
        head = HEAD[m]
        lines.append(f"| {m} | {head} | {r['input_size']} | {r['steps']} x {r['batch']} | {r['params']:,} | "
                     f"{r['pck_all_mean']:.1f} | {r['pck_hard_mean']:.1f} | "
                     f"{', '.join(f'{v:.1f}' for v in r['pck_all'])} | "
                     f"{', '.join(f'{v:.1f}' for v in r['pck_hard'])} |")
    for m in ("rle", "rle-unnorm"):
        if m in s:
            med = [(v["median_sigma"], v["median_error"]) for v in s[m]["sigma_vs_error"]]
            lines += ["", f"{m}: sigma vs actual error, Spearman (crop-normalised, all labelled shared joints): "
                          f"mean {s[m]['spearman_mean']:.3f}, per seed {s[m]['spearman']} (target >= 0.3); "
                          f"median sigma / median error (fraction of the crop) per seed: {med}."]
    if "okdhp" in s:
        lines += ["", f"OKDHP exported branch per seed: {s['okdhp']['exported_branch']} "
                      f"(validation losses {s['okdhp']['branch_val_losses']})."]
    lines += ["", "Latency: 1 thread, interleaved rounds in one process (ONNX Runtime for .onnx, LiteRT for "
              ".tflite); these machines are shared and noisy, compare rows only within this table.", "",
              "| model | bytes | median ms | p90 ms |", "|---|---:|---:|---:|"]
    for n, v in out["latency_1thread"].items():
        lines.append(f"| {n} | {v['bytes']:,} | {v['median_ms']:.2f} | {v['p90_ms']:.2f} |")
    lines += ["", "Export parity (torch vs ONNX Runtime, max |output diff| / max decoded keypoint px): " +
              ", ".join(f"{m} {r['onnx_parity_max_abs']:.1e} / {r['onnx_parity_max_px']:.2f} px" for m, r in s.items())]
    if out.get("tflite"):
        lines += ["", "TFLite (litert-torch, fp32) parity vs torch and accuracy through the LiteRT backend: " +
                  ", ".join(f"{m} max |diff| {t['max_abs']:.1e}, {t['max_px']:.2f} px, PCK ALL {t['pck_all']:.1f} "
                            f"(ONNX {t['pck_all_onnx']:.1f})" for m, t in out["tflite"].items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", default="all", choices=["label", *METHODS, "report", "all"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=600, help="optimiser steps per run (the equal budget)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--branches", type=int, default=3, help="OKDHP branches (balanced)")
    p.add_argument("--hm-loss", default="mse", choices=["mse", "bce"], help="per-pixel heatmap KD loss")
    p.add_argument("--w-spatial", type=float, default=0.1, help="weight of the spatial KL to the teacher maps")
    p.add_argument("--rotate", type=float, default=15.0, help="augmentation: max rotation (deg)")
    p.add_argument("--cutout", type=float, default=0.1, help="augmentation: cutout probability")
    p.add_argument("--out", default="runs/students")
    p.add_argument("--cache", default="runs/cache")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--tflite", action="store_true", help="report: also export each method's first run to TFLite")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if a.stage == "label":
        labels = load_shippable_labels(a.cache)
        log.info("%d crops in %s", len(labels), labels.path)
        return 0
    stages = ["kd", "okdhp", "rle", "simcc"] if a.stage == "all" else [a.stage]
    for m in stages if a.stage != "report" else []:  # rle-unnorm only on request
        for seed in a.seeds:
            run_one(m, seed, a)
    if a.stage in ("report", "all"):
        sys.stdout.write((RESULTS / "students_ablation.md").read_text() if report(a) else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
