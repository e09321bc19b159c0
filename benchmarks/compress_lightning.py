"""Compress MoveNet Lightning with Thunder as teacher and report accuracy + interleaved latency.

Run from the project root (needs the compress extra and ../shared/assets). Subcommands:

    # the whole `edgepose compress` chain (default when no subcommand is given)
    python benchmarks/compress_lightning.py pipeline --out runs/compress_lightning --ratio 0.3 --steps 250

    # budget search: the least pruning whose (emulated) latency fits a device's frame budget,
    # plus the impossible-budget error path
    python benchmarks/compress_lightning.py budget --device rpi4

    # per-layer int8 sensitivity of Lightning fp32 (ORT QDQ) -> the float fallback layers
    python benchmarks/compress_lightning.py sensitivity

    # every variant (fp32 / ORT int8 / ORT int8 + fallback / TFLite fp32 / TFLite int8, for the
    # original and for a distilled pruned student) evaluated on the 161-person set and timed in
    # ONE interleaved run with the official int8 TFLite
    python benchmarks/compress_lightning.py variants --student runs/compress_kd50

    # PCK vs steps of the long distillation (compression/distill/long_kd.py) checkpoints
    python benchmarks/compress_lightning.py kdcurve --student runs/compress_kd50

Results go to benchmarks/results/compress_*.{json,md}; model files to --work (runs/compress_variants).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"
MODELS = ASSETS / "models" / "movenet"
RESULTS = ROOT / "benchmarks" / "results"
#: The licence-clean label cache (Thunder pseudo-labels of shippable crops only).
DEFAULT_LABELS = ROOT / "runs" / "cache" / "labels-8393a9276f1afeaffda7.npz"

log = logging.getLogger("compress_lightning")


def _pipeline(a) -> int:
    from edgepose.compression.pipeline import CompressConfig, compress

    cfg = CompressConfig(teacher=str(MODELS / "movenet_thunder_fp32.onnx"), model=str(MODELS / "movenet_lightning_fp32.onnx"),
                         out=a.out, detector=str(MODELS / "movenet_multipose_lightning_fp32.onnx"),
                         data_root=str(ASSETS / "data"), baseline=str(MODELS / "movenet_lightning_int8.tflite"),
                         prune={"ratio": a.ratio, "importance": a.importance, "global_pruning": a.global_pruning},
                         distill={"steps": a.steps, "lr": a.lr}, quantize={"calibration": a.calibration},
                         threads=a.threads)
    report = compress(cfg)
    sys.stdout.write((Path(a.out) / "report.md").read_text())
    sys.stdout.write(json.dumps(report["speedup_vs_original"], indent=1) + "\n")
    return 0


def _budget(a) -> int:
    import torch

    from edgepose.compression.budget import BudgetConfig, BudgetError, search_budget
    from edgepose.compression.importer import import_movenet

    torch.set_num_threads(1)
    net = import_movenet(MODELS / "movenet_lightning_fp32.onnx")
    cfg = BudgetConfig(budget_ms=a.budget_ms, budget_fraction=a.budget_fraction, threads=a.threads,
                       ratios=tuple(a.ratios))
    host = a.host_profile if a.host_profile else None
    out = {"device": a.device}
    name = f"compress_budget_{a.device}" + (f"_{a.budget_ms:g}ms" if a.budget_ms else "")
    md = [f"# Budget search: MoveNet Lightning fp32 for `{a.device}` (magnitude-pruned candidates)", ""]
    try:
        res = search_budget(net, profile=a.device, cfg=cfg, host=host, workdir=Path(a.work) / "budget")
    except BudgetError as e:  # the bad-input path, for real
        out["impossible"] = {"budget_ms": e.budget_ms, "error": str(e), "best_ms": e.best_ms, "best_ratio": e.best_ratio}
        if e.result is not None:
            out["search"] = e.result.to_dict()
            md.append(e.result.to_markdown())
        md += ["`BudgetError`:", "", f"> {e}"]
    else:
        out["search"] = res.to_dict()
        md.append(res.to_markdown())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1))
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def _val_split(labels, size: int, n_val: int):
    """Held-out *training* crops (un-augmented) + the teacher keypoints normalised to them."""
    import numpy as np

    from edgepose.compression.data.augment import AugmentConfig
    from edgepose.compression.data.dataset import PseudoLabelDataset

    tr, va = labels.split(0.1, 0)
    ds = PseudoLabelDataset(labels, va, out_size=size, scale=np.ones(3), shift=np.zeros(3),
                            augment_cfg=AugmentConfig.none())
    idx = np.linspace(0, len(ds) - 1, num=min(n_val, len(ds))).round().astype(int)
    raws = [ds.raw(int(i)) for i in idx]
    cal = PseudoLabelDataset(labels, tr, out_size=size, scale=np.ones(3), shift=np.zeros(3),
                             augment_cfg=AugmentConfig.none())
    cidx = np.linspace(0, len(cal) - 1, num=min(128, len(cal))).round().astype(int)
    return [r[0] for r in raws], np.stack([r[1] for r in raws]), [cal.raw(int(i))[0] for i in cidx]


def _sensitivity(a) -> int:
    from edgepose.compression.data.labels import load_labels
    from edgepose.compression.quantize import QuantizeConfig, layer_sensitivity

    labels = load_labels(a.labels)
    val, val_t, cal = _val_split(labels, 192, a.n_val)
    model = a.model or str(MODELS / "movenet_lightning_fp32.onnx")
    rep = layer_sensitivity(model, cal, val, val_t, QuantizeConfig(calibration=a.calibration), gate=a.gate)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = a.name or "compress_int8_sensitivity"
    (RESULTS / f"{name}.json").write_text(json.dumps({"model": model, **rep.to_dict()}, indent=1))
    (RESULTS / f"{name}.md").write_text(f"# Per-layer int8 sensitivity: {Path(model).name}\n\n" + rep.to_markdown(15))
    print(rep.to_markdown(15))
    return 0


def _student(student_dir: Path, step: int | None):
    """The distilled pruned student at ``step`` (default: the last checkpoint)."""
    import torch

    from edgepose.compression.distill.long_kd import build_student
    from edgepose.compression.prune import load_plan

    _, net = build_student(str(MODELS / "movenet_lightning_fp32.onnx"), load_plan(student_dir / "prune_plan.json"))
    cks = sorted(student_dir.glob("ckpt_*.pt"))
    # default: the LAST checkpoint (choosing by evaluation-set PCK would tune on the test set)
    ck = [c for c in cks if step is None or int(c.stem.split("_")[1]) == step][-1]
    d = torch.load(ck, map_location="cpu")
    net.load_state_dict(d["state_dict"])
    return net.eval(), d["step"]


def evaluate_file(path: str, threads: int = 1) -> dict:
    """``edgepose eval`` protocol on the 161-person set; files without edgepose metadata (e.g. an
    ORT int8 of the asset) use the MoveNet Lightning card of their format."""
    from edgepose.compression.pipeline import _evaluate as _eval_card
    from edgepose.errors import ModelLoadError
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    root = str(ASSETS / "data")
    try:
        r = _eval_card(path, root, threads)
        return {k: r[k] for k in ("pck_torso", "hard_pck_torso", "n_people")}
    except ModelLoadError:
        card = "movenet-lightning-int8" if str(path).endswith(".tflite") else "movenet-lightning-fp32"
        with load_model(path, card=card, num_threads=threads) as m:
            r = evaluate(m, root=root, progress=False)
        return {"pck_torso": r.row("ALL").pck_torso, "hard_pck_torso": r.row("HARD").pck_torso,
                "n_people": r.row("ALL").n_people}


def write_report(name: str, out: dict, md: list[str]) -> None:
    """benchmarks/results/NAME.json and .md, and the Markdown on stdout."""
    import sys

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1, default=str))
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    sys.stdout.write("\n".join(md) + "\n")


def _variants(a) -> int:
    import torch

    from edgepose.compression.data.labels import load_labels
    from edgepose.compression.export import ExportConfig, export_onnx, export_tflite
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.latency import interleaved_latency

    from edgepose.compression.quantize import QuantizeConfig, quantize

    torch.set_num_threads(1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    labels = load_labels(a.labels)
    _, _, cal = _val_split(labels, 192, 8)
    cal64 = cal[:64]
    sens = RESULTS / "compress_int8_sensitivity.json"
    excl = tuple(json.loads(sens.read_text())["exclude_nodes"]) if sens.is_file() else ()
    orig = str(MODELS / "movenet_lightning_fp32.onnx")
    models = {"lightning_fp32_onnx": orig, "official_int8_tflite": str(MODELS / "movenet_lightning_int8.tflite")}
    notes = {}

    def fresh(p):
        return not (a.reuse and Path(p).is_file())

    def build(tag, onnx_fp32, net):
        qcfg = QuantizeConfig(calibration=a.calibration)
        p = work / f"{tag}_ort_int8.onnx"
        if fresh(p):
            quantize(onnx_fp32, p, qcfg, calibration=cal64)
        models[f"{tag}_ort_int8"] = str(p)
        if excl and tag == "lightning":
            p = work / f"{tag}_ort_int8_fallback.onnx"
            if fresh(p):
                quantize(onnx_fp32, p, QuantizeConfig(calibration=a.calibration, exclude_nodes=excl), calibration=cal64)
            models[f"{tag}_ort_int8_fallback"] = str(p)
        if not a.no_tflite:
            p = work / f"{tag}_fp32.tflite"
            if fresh(p):
                r = export_tflite(net, p, check_crops=cal[:4])
                notes[f"{tag}_fp32_tflite"] = {"max_px_vs_torch": r.max_px}
            models[f"{tag}_fp32_tflite"] = str(p)
            p = work / f"{tag}_int8.tflite"
            if fresh(p):
                r = export_tflite(net, p, int8=True, calibration=cal64, check_crops=cal[:4])
                notes[f"{tag}_int8_tflite"] = {"mean_px_vs_torch": r.mean_px, "max_px_vs_torch": r.max_px}
            models[f"{tag}_int8_tflite"] = str(p)

    net = import_movenet(orig).eval()
    build("lightning", orig, net)
    if a.student:
        snet, step = _student(Path(a.student), a.step)
        p = export_onnx(snet, work / "student_fp32.onnx", ExportConfig(), compression={"long_kd_step": step},
                        check_crops=cal[:4])
        models["student_fp32_onnx"] = p.path
        notes["student"] = {"dir": a.student, "step": step}
        build("student", p.path, snet)
    out = {"models": models, "notes": notes, "fallback_nodes": list(excl), "threads": a.threads}
    if not a.no_eval:
        out["accuracy"] = {k: evaluate_file(p) for k, p in models.items()}
    lat = interleaved_latency(models, rounds=a.rounds, per_round=5, threads=a.threads)
    out["latency_ms"] = {k: v.to_dict() for k, v in lat.items()}
    out["size_bytes"] = {k: os.path.getsize(p) for k, p in models.items()}
    base, off = lat["lightning_fp32_onnx"].p50, lat["official_int8_tflite"].p50
    lines = ["# Lightning variants: accuracy (161-person set) and latency (one interleaved run)", "",
             f"{a.threads} threads, ONNX Runtime CPU for .onnx, LiteRT (XNNPACK) for .tflite; medians of "
             f"{a.rounds} x 5 interleaved runs on a shared 2-core host (noisy: compare ratios within this run).", "",
             "| variant | p50 ms | p90 ms | vs fp32 ONNX | vs official int8 | size KB | PCK@0.2 torso | hard |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k, r in lat.items():
        acc = out.get("accuracy", {}).get(k, {})
        lines.append(f"| {k} | {r.p50:.2f} | {r.p90:.2f} | {base / r.p50:.2f}x | {r.p50 / off:.2f} | "
                     f"{out['size_bytes'][k] / 1024:.0f} | {acc.get('pck_torso', float('nan')):.1f} | "
                     f"{acc.get('hard_pck_torso', float('nan')):.1f} |")
    lines += ["", "`vs fp32 ONNX` = speed-up over Lightning fp32 on ORT; `vs official int8` = latency as a "
              "fraction of the official int8 TFLite's (target <= 0.6).", ""]
    if "student" in notes:
        ps = Path(a.student) / "prune_summary.json"
        frac = json.loads(ps.read_text())["macs_fraction"] if ps.is_file() else float("nan")
        lines.append(f"student = Lightning pruned to {100 * frac:.0f} % of the MACs, distilled "
                     f"{notes['student']['step']} steps ({notes['student']['dir']}, compression/distill/long_kd.py).")
    if excl:
        lines.append(f"ORT int8 fallback keeps {len(excl)} convolutions float (per-layer sensitivity, "
                     "benchmarks/results/compress_int8_sensitivity.md).")
    out["markdown"] = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = a.name or "compress_variants"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1, default=str))
    (RESULTS / f"{name}.md").write_text(out["markdown"] + "\n")
    print(out["markdown"])
    return 0


def _kdcurve(a) -> int:
    """Score every checkpoint of a long_kd run on the 161-person set; write PCK vs steps."""
    from edgepose.compression.distill.long_kd import evaluate_checkpoints

    out = Path(a.student)
    rows = evaluate_checkpoints(out, str(MODELS / "movenet_lightning_fp32.onnx"), str(ASSETS / "data"), threads=1)
    summ = json.loads((out / "long_kd.json").read_text())
    prune = json.loads((out / "prune_summary.json").read_text()) if (out / "prune_summary.json").is_file() else {}
    val = dict(zip(summ["val_steps"], summ["val"]))
    lines = [f"# Long distillation of the pruned Lightning ({out.name})", "",
             f"Student: Lightning pruned to {100 * prune.get('macs_fraction', float('nan')):.0f} % of the MACs "
             f"({prune.get('params_after', 0) / 1e6:.2f}M params), content-aware importance, same ratio per group. "
             "Teachers: the unpruned Lightning fp32 (head maps + FPN features through 1x1 adapters) and "
             "MoveNet Thunder pseudo-labels (heatmaps + keypoints) of licence-clean crops "
             f"({summ['n_train']} train / {summ['n_val']} held-out). Config: {json.dumps(summ['config'])}.", "",
             "Accuracy: the 161-person evaluation set, `edgepose eval` protocol (PCK@0.2 x torso). "
             "Unpruned Lightning fp32: 67.7; official int8 TFLite: 65.8 (same runner, 'centre' crops, "
             "before session 4; the protocol's 'index' crops read 68.6 / 67.4).", "",
             "| step | minutes | held-out KD loss | PCK@0.2 torso | hard slice |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['step']} | {(r.get('seconds') or 0) / 60:.0f} | {val.get(r['step'], float('nan')):.3f} | "
                     f"{r['pck_torso']:.1f} | {r['hard_pck_torso']:.1f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"compress_kd_curve_{out.name}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"compress_kd_curve_{out.name}.json").write_text(json.dumps({"rows": rows, "long_kd": summ,
                                                                            "prune": prune}, indent=1))
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("pipeline", "budget", "sensitivity", "variants", "kdcurve", "-h", "--help"):
        argv = ["pipeline", *argv]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("pipeline", help="the whole edgepose compress chain")
    pp.add_argument("--out", default="runs/compress_lightning")
    pp.add_argument("--ratio", type=float, default=0.3, help="channel ratio removed per group")
    pp.add_argument("--importance", default="content", choices=["magnitude", "taylor", "content"])
    pp.add_argument("--global-pruning", action="store_true", help="rank channels across layers")
    pp.add_argument("--steps", type=int, default=250)
    pp.add_argument("--lr", type=float, default=3e-4)
    pp.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    pp.add_argument("--threads", type=int, default=2)
    pb = sub.add_parser("budget", help="budget search for a device profile")
    pb.add_argument("--device", default="rpi4")
    pb.add_argument("--budget-ms", type=float)
    pb.add_argument("--budget-fraction", type=float, default=1.0)
    pb.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    pb.add_argument("--host-profile", default=str(ROOT / "device_profiles" / "host.yaml"),
                    help="measured host profile for the emulator ('' = probe this host now)")
    pb.add_argument("--threads", type=int, default=2)
    pb.add_argument("--work", default="runs/compress_variants")
    ps = sub.add_parser("sensitivity", help="per-layer int8 sensitivity (ORT QDQ)")
    ps.add_argument("--labels", default=str(DEFAULT_LABELS))
    ps.add_argument("--model", help="fp32 ONNX (default: Lightning fp32)")
    ps.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    ps.add_argument("--gate", type=float, default=1.0, help="allowed proxy-PCK drop (points)")
    ps.add_argument("--n-val", type=int, default=96)
    ps.add_argument("--name")
    pv = sub.add_parser("variants", help="all int8 / TFLite variants, evaluated + one interleaved run")
    pv.add_argument("--labels", default=str(DEFAULT_LABELS))
    pv.add_argument("--student", help="long_kd output folder (prune_plan.json + ckpt_*.pt)")
    pv.add_argument("--step", type=int, help="checkpoint step (default: the last one)")
    pv.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    pv.add_argument("--threads", type=int, default=2)
    pv.add_argument("--rounds", type=int, default=15)
    pv.add_argument("--no-tflite", action="store_true")
    pv.add_argument("--reuse", action="store_true", help="keep variant files already in --work")
    pv.add_argument("--no-eval", action="store_true")
    pv.add_argument("--work", default="runs/compress_variants")
    pv.add_argument("--name")
    pk = sub.add_parser("kdcurve", help="PCK vs steps of a long_kd run's checkpoints")
    pk.add_argument("--student", default="runs/compress_kd50")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "torch.onnx", "onnxscript", "torch._export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return {"pipeline": _pipeline, "budget": _budget, "sensitivity": _sensitivity, "variants": _variants,
            "kdcurve": _kdcurve}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
