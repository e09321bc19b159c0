"""The whole chain behind ``edgepose compress``: label -> import -> prune -> distill -> export ->
int8 -> evaluate -> interleaved latency -> report (Markdown + JSON) and manifest.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompressConfig:
    """Options of :func:`compress` (nested technique configs keep their own defaults).

    Attributes:
        teacher: teacher ONNX (MoveNet Thunder).
        model: the pretrained model to compress (MoveNet Lightning fp32 ONNX).
        data: folders / files of training media; empty = the shared training pool under data_root.
        out: output folder.
        cache_dir: pseudo-label cache folder (keep it out of git).
        detector: MultiPose ONNX for person boxes (None: whole frame, single person).
        data_root: the assets ``data`` folder (training pool and evaluation sets).
        prune / distill / quantize / label: technique configs as dicts (see their dataclasses).
        evaluate: run the evaluation set (161 people) on original and compressed models.
        baseline: an extra file timed and evaluated beside them (the official int8 TFLite).
        threads: runtime / torch threads.
    """

    teacher: str
    model: str
    out: str
    data: tuple[str, ...] = ()
    cache_dir: str = "runs/cache"
    detector: str | None = None
    data_root: str = "../shared/assets/data"
    prune: dict = field(default_factory=dict)
    distill: dict = field(default_factory=dict)
    quantize: dict = field(default_factory=dict)
    label: dict = field(default_factory=dict)
    evaluate: bool = True
    baseline: str | None = None
    threads: int = 2
    version: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def _evaluate(path: str, data_root: str, threads: int) -> dict:
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    with load_model(path, num_threads=threads) as m:
        r = evaluate(m, root=data_root, progress=False)
    return {"pck_torso": r.row("ALL").pck_torso, "hard_pck_torso": r.row("HARD").pck_torso,
            "n_people": r.row("ALL").n_people, "rows": r.to_dict()["rows"]}


def compress(cfg: CompressConfig, *, progress: bool = True) -> dict:
    """Run the chain; returns the report dict (also written to ``out/report.json`` / ``.md``)."""
    import torch

    from .data import LabelConfig, label_media, scan_media, training_sources
    from .data.augment import AugmentConfig
    from .data.dataset import PseudoLabelDataset, calibration_crops
    from .distill import DistillConfig, distill
    from .export import ExportConfig, export_onnx, write_manifest
    from .importer import import_movenet
    from .latency import interleaved_latency
    from .prune import PruneConfig, prune, save_plan
    from .quantize import QuantizeConfig, quantize

    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if not os.path.isfile(cfg.teacher):
        raise FileNotFoundError(f"teacher model not found: {cfg.teacher!r}; pass --teacher with the "
                                "MoveNet Thunder ONNX (../shared/assets/models/movenet/movenet_thunder_fp32.onnx)")
    items = scan_media(list(cfg.data)) if cfg.data else training_sources(cfg.data_root)
    labels = label_media(items, LabelConfig(teacher=cfg.teacher, detector=cfg.detector, **cfg.label),
                         cfg.cache_dir, progress=progress, num_threads=cfg.threads)
    net = import_movenet(cfg.model).to(memory_format=torch.channels_last)
    size = net.input_size[0]
    pcfg = PruneConfig(**cfg.prune)
    batches = None
    if pcfg.importance != "magnitude":
        ds = PseudoLabelDataset(labels, np.arange(0, len(labels), max(1, len(labels) // 64)), out_size=size,
                                scale=net.scale.flatten().numpy(), shift=net.shift.flatten().numpy(),
                                augment_cfg=AugmentConfig.none())
        loader = torch.utils.data.DataLoader(ds, batch_size=16)
        batches = list(loader)
    pres = prune(net, pcfg, batches=batches)
    save_plan(pres.plan, out / "prune_plan.json")
    student = pres.model.to(memory_format=torch.channels_last)
    dcfg = DistillConfig(**cfg.distill)
    drep = distill(student, labels, dcfg, reference=net, progress=progress)
    drep.save(out)
    crops = calibration_crops(labels, 64, out_size=size)
    comp = {"prune": pcfg.to_dict(), "prune_summary": pres.summary(), "distill": dcfg.to_dict(),
            "labels_cache": os.path.basename(labels.path)}
    fp32 = export_onnx(student, out / "student_fp32.onnx", ExportConfig(), compression=comp, check_crops=crops[:4])
    qcfg = QuantizeConfig(**cfg.quantize)
    int8_path = out / "student_int8.onnx"
    quantize(fp32.path, int8_path, qcfg, calibration=crops)
    models = {"original": cfg.model, "student_fp32": fp32.path, "student_int8": os.fspath(int8_path)}
    if cfg.baseline:
        models["baseline"] = cfg.baseline
    lat = interleaved_latency(models, threads=cfg.threads)
    report = {"config": cfg.to_dict(), "labels": {"crops": len(labels), "files": len(items), "cache": labels.path},
              "prune": pres.summary(), "distill": {"seconds": drep.seconds, "val": drep.val,
                                                   "val_steps": drep.val_steps},
              "export_parity_px": fp32.max_px,
              "latency_ms": {k: v.to_dict() for k, v in lat.items()},
              "speedup_vs_original": {k: lat["original"].p50 / v.p50 for k, v in lat.items()},
              "size_bytes": {k: os.path.getsize(p) for k, p in models.items()},
              "macs": {"original": pres.macs[0], "student": pres.macs[1]}}
    if cfg.evaluate:
        report["accuracy"] = {k: _evaluate(p, cfg.data_root, cfg.threads) for k, p in models.items()}
    report["seconds"] = time.perf_counter() - t0
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(_markdown(report))
    write_manifest(out, [fp32.path, int8_path, out / "prune_plan.json"])
    return report


def _markdown(r: dict) -> str:
    lines = ["# edgepose compress report", "",
             f"Pseudo-labels: {r['labels']['crops']} teacher-labelled crops from {r['labels']['files']} files.",
             f"Pruning: MACs {r['prune']['macs_before'] / 1e6:.1f}M -> {r['prune']['macs_after'] / 1e6:.1f}M "
             f"({100 * r['prune']['macs_fraction']:.0f} %), params {r['prune']['params_before'] / 1e6:.2f}M -> "
             f"{r['prune']['params_after'] / 1e6:.2f}M, exactness guard {r['prune']['guard_max_diff']:.1e}.",
             f"Distillation: {r['distill']['seconds']:.0f} s; validation loss "
             + " -> ".join(f"{v:.3f}" for v in r["distill"]["val"]) + ".",
             f"Export parity (torch vs ORT): {r['export_parity_px']:.4f} px.", "",
             "| model | p50 ms | p90 ms | speed-up vs original | size KB | PCK@0.2 torso | hard |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for k, lat in r["latency_ms"].items():
        acc = r.get("accuracy", {}).get(k, {})
        pck = f"{acc['pck_torso']:.1f}" if acc else "-"
        hard = f"{acc['hard_pck_torso']:.1f}" if acc else "-"
        lines.append(f"| {k} | {lat['p50']:.2f} | {lat['p90']:.2f} | {r['speedup_vs_original'][k]:.2f}x | "
                     f"{r['size_bytes'][k] / 1024:.0f} | {pck} | {hard} |")
    lines += ["", "Latency: ONNX Runtime CPU (LiteRT for .tflite), interleaved rounds, medians; "
              "accuracy: the 161-person evaluation set (ASSETS.md protocol)."]
    return "\n".join(lines) + "\n"
