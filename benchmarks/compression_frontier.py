"""The compression frontier of MoveNet Lightning: accuracy vs latency of every compressed variant.

Run from the repository root (needs the compress extra; the assets folder from $EDGEPOSE_ASSETS or
--assets). Subcommands:

    # every variant (fp32 / ORT int8 / ORT int8 + fallback / TFLite fp32 / TFLite int8, for the
    # original and optionally a distilled pruned student) evaluated on the 161-person set and
    # timed in ONE interleaved run with the official int8 TFLite (the default subcommand)
    python benchmarks/compression_frontier.py variants [--student runs/compress_kd50]

    # the whole `edgepose compress` chain (prune + distill from Thunder + quantize + export)
    python benchmarks/compression_frontier.py pipeline --out runs/compress_lightning --ratio 0.3 --steps 250

    # budget search: the least pruning whose (emulated) latency fits a device's frame budget,
    # plus the impossible-budget error path
    python benchmarks/compression_frontier.py budget --device rpi4

    # per-layer int8 sensitivity of Lightning fp32 (ORT QDQ) -> the float fallback layers
    python benchmarks/compression_frontier.py sensitivity

Reports go to benchmarks/results/compress_*.{json,md} (--out DIR); model files to --work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from _common import add_assets_arg, add_out_arg, movenet, run_meta, use_assets, write_report

ROOT = Path(__file__).resolve().parent.parent
#: The licence-clean label cache (Thunder pseudo-labels of shippable crops only).
DEFAULT_LABELS = ROOT / "runs" / "cache" / "labels-8393a9276f1afeaffda7.npz"

log = logging.getLogger("compression_frontier")


def _pipeline(a) -> int:
    from edgepose.compression.pipeline import CompressConfig, compress

    cfg = CompressConfig(teacher=movenet(a.root, "movenet_thunder_fp32.onnx"),
                         model=movenet(a.root, "movenet_lightning_fp32.onnx"), out=a.work,
                         detector=movenet(a.root, "movenet_multipose_lightning_fp32.onnx"),
                         data_root=str(a.root / "data"), baseline=movenet(a.root, "movenet_lightning_int8.tflite"),
                         prune={"ratio": a.ratio, "importance": a.importance, "global_pruning": a.global_pruning},
                         distill={"steps": a.steps, "lr": a.lr}, quantize={"calibration": a.calibration},
                         threads=a.threads)
    report = compress(cfg)
    sys.stdout.write((Path(a.work) / "report.md").read_text())
    sys.stdout.write(json.dumps(report["speedup_vs_original"], indent=1) + "\n")
    return 0


def _budget(a) -> int:
    import torch

    from edgepose.compression.budget import BudgetConfig, BudgetError, search_budget
    from edgepose.compression.importer import import_movenet

    torch.set_num_threads(1)
    net = import_movenet(movenet(a.root, "movenet_lightning_fp32.onnx"))
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
    write_report(a.out, name, {**out, "meta": run_meta()}, md)
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
    model = a.model or movenet(a.root, "movenet_lightning_fp32.onnx")
    rep = layer_sensitivity(model, cal, val, val_t, QuantizeConfig(calibration=a.calibration), gate=a.gate)
    write_report(a.out, a.name or "compress_int8_sensitivity", {"model": model, **rep.to_dict()},
                 f"# Per-layer int8 sensitivity: {Path(model).name}\n\n" + rep.to_markdown(15))
    return 0


def _student(root: Path, student_dir: Path, step: int | None):
    """The distilled pruned student at ``step`` (default: the last checkpoint)."""
    import torch

    from edgepose.compression.distill.long_kd import build_student
    from edgepose.compression.prune import load_plan

    _, net = build_student(movenet(root, "movenet_lightning_fp32.onnx"), load_plan(student_dir / "prune_plan.json"))
    cks = sorted(student_dir.glob("ckpt_*.pt"))
    # default: the LAST checkpoint (choosing by evaluation-set PCK would tune on the test set)
    ck = [c for c in cks if step is None or int(c.stem.split("_")[1]) == step][-1]
    d = torch.load(ck, map_location="cpu")
    net.load_state_dict(d["state_dict"])
    return net.eval(), d["step"]


def evaluate_file(path: str, data_root: Path, threads: int = 1) -> dict:
    """``edgepose eval`` protocol on the 161-person set; files without edgepose metadata (e.g. an
    ORT int8 of the asset) use the MoveNet Lightning card of their format."""
    from edgepose.errors import ModelLoadError
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    try:
        model = load_model(path, num_threads=threads)
    except ModelLoadError:
        card = "movenet-lightning-int8" if str(path).endswith(".tflite") else "movenet-lightning-fp32"
        model = load_model(path, card=card, num_threads=threads)
    with model as m:
        r = evaluate(m, root=str(data_root), progress=False)
    return {"pck_torso": r.row("ALL").pck_torso, "hard_pck_torso": r.row("HARD").pck_torso,
            "n_people": r.row("ALL").n_people}


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
    sens = Path(a.out) / "compress_int8_sensitivity.json"
    excl = tuple(json.loads(sens.read_text())["exclude_nodes"]) if sens.is_file() else ()
    orig = movenet(a.root, "movenet_lightning_fp32.onnx")
    models = {"lightning_fp32_onnx": orig, "official_int8_tflite": movenet(a.root, "movenet_lightning_int8.tflite")}
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
        snet, step = _student(a.root, Path(a.student), a.step)
        p = export_onnx(snet, work / "student_fp32.onnx", ExportConfig(), compression={"long_kd_step": step},
                        check_crops=cal[:4])
        models["student_fp32_onnx"] = p.path
        notes["student"] = {"dir": a.student, "step": step}
        build("student", p.path, snet)
    out = {"models": models, "notes": notes, "fallback_nodes": list(excl), "threads": a.threads}
    if not a.no_eval:
        out["accuracy"] = {k: evaluate_file(p, a.root / "data") for k, p in models.items()}
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
                     "compression_frontier.py sensitivity).")
    write_report(a.out, a.name or "compress_variants", {**out, "meta": run_meta()}, lines)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("pipeline", "budget", "sensitivity", "variants", "-h", "--help"):
        argv = ["variants", *argv]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    parsers = {}
    for name, helptext, work in (("variants", "all int8 / TFLite variants, evaluated + one interleaved run",
                                  "runs/compress_variants"),
                                 ("pipeline", "the whole edgepose compress chain", "runs/compress_lightning"),
                                 ("budget", "budget search for a device profile", "runs/compress_variants"),
                                 ("sensitivity", "per-layer int8 sensitivity (ORT QDQ)", None)):
        sp = parsers[name] = sub.add_parser(name, help=helptext)
        add_assets_arg(sp)
        add_out_arg(sp)
        if work:
            sp.add_argument("--work", default=work, help="folder for the model files")
    pp = parsers["pipeline"]
    pp.add_argument("--ratio", type=float, default=0.3, help="channel ratio removed per group")
    pp.add_argument("--importance", default="content", choices=["magnitude", "taylor", "content"])
    pp.add_argument("--global-pruning", action="store_true", help="rank channels across layers")
    pp.add_argument("--steps", type=int, default=250)
    pp.add_argument("--lr", type=float, default=3e-4)
    pp.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    pp.add_argument("--threads", type=int, default=2)
    pb = parsers["budget"]
    pb.add_argument("--device", default="rpi4")
    pb.add_argument("--budget-ms", type=float)
    pb.add_argument("--budget-fraction", type=float, default=1.0)
    pb.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    pb.add_argument("--host-profile", default=str(ROOT / "device_profiles" / "host.yaml"),
                    help="measured host profile for the emulator ('' = probe this host now)")
    pb.add_argument("--threads", type=int, default=2)
    ps = parsers["sensitivity"]
    ps.add_argument("--labels", default=str(DEFAULT_LABELS))
    ps.add_argument("--model", help="fp32 ONNX (default: Lightning fp32)")
    ps.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    ps.add_argument("--gate", type=float, default=1.0, help="allowed proxy-PCK drop (points)")
    ps.add_argument("--n-val", type=int, default=96)
    ps.add_argument("--name")
    pv = parsers["variants"]
    pv.add_argument("--labels", default=str(DEFAULT_LABELS))
    pv.add_argument("--student", help="long_kd output folder (prune_plan.json + ckpt_*.pt)")
    pv.add_argument("--step", type=int, help="checkpoint step (default: the last one)")
    pv.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy"])
    pv.add_argument("--threads", type=int, default=2)
    pv.add_argument("--rounds", type=int, default=15)
    pv.add_argument("--no-tflite", action="store_true")
    pv.add_argument("--reuse", action="store_true", help="keep variant files already in --work")
    pv.add_argument("--no-eval", action="store_true")
    pv.add_argument("--name")
    a = p.parse_args(argv)
    a.root = use_assets(a.assets)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "torch.onnx", "onnxscript", "torch._export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return {"pipeline": _pipeline, "budget": _budget, "sensitivity": _sensitivity, "variants": _variants}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
