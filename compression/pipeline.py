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
        device: device profile (name or YAML path) whose frame budget the pruning ratio must meet
            (budget search, :mod:`edgepose.compression.budget`); None = use ``prune`` as given.
        budget: :class:`~edgepose.compression.budget.BudgetConfig` options (e.g. ``budget_ms``,
            ``budget_fraction``, ``ratios``); a non-empty dict also turns the search on.
        sensitivity_gate: run the per-layer int8 sensitivity pass on held-out training crops and
            keep the most sensitive convolutions float until the proxy PCK drop is within this many
            points (None = off; :func:`~edgepose.compression.quantize.layer_sensitivity`).
        tflite: also export TFLite fp32 + int8 (litert-torch; skipped with a warning when it is
            not installed): on XNNPACK CPUs int8 TFLite is the fast path.
        tflite_qat_steps: > 0: the int8 TFLite by quantisation-aware fine-tuning toward the float
            student's outputs for this many steps on augmented training crops
            (:mod:`edgepose.compression.quantize.qat`); 0 = post-training ranges.
        shippable_only: with no ``data``, train only on the licence allow-list
            (:func:`~edgepose.compression.data.shippable.shippable_sources`), as a model that is
            shipped must be; False = every training file of the pool (research use).
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
    device: str | None = None
    budget: dict = field(default_factory=dict)
    shippable_only: bool = True
    sensitivity_gate: float | None = None
    tflite: bool = True
    tflite_qat_steps: int = 0
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
    from .data.shippable import shippable_sources
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
    if cfg.tflite_qat_steps:
        from .quantize.qat import QATConfig

        QATConfig(steps=cfg.tflite_qat_steps)  # a bad value fails here, not after the distillation
    net = import_movenet(cfg.model).to(memory_format=torch.channels_last)
    size = net.input_size[0]
    pcfg = PruneConfig(**cfg.prune)
    budget = None
    if cfg.device is not None or cfg.budget:
        from dataclasses import replace

        from .budget import BudgetConfig, search_budget

        bopts = dict(cfg.budget)
        host = bopts.pop("host", None)  # a measured host profile for the emulator (None: probe)
        budget = search_budget(net, profile=cfg.device, cfg=BudgetConfig(**bopts), workdir=out / "budget", host=host)
        # the candidates were timed with the same ratio in every group: prune that way
        pcfg = replace(pcfg, ratio=budget.chosen.ratio, target_macs=None, global_pruning=False)
    # labelling after the budget search: an impossible budget fails before the expensive part
    if cfg.data:
        items = scan_media(list(cfg.data))
    else:
        items = shippable_sources(cfg.data_root) if cfg.shippable_only else training_sources(cfg.data_root)
    labels = label_media(items, LabelConfig(teacher=cfg.teacher, detector=cfg.detector, **cfg.label),
                         cfg.cache_dir, progress=progress, num_threads=cfg.threads)
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
    sens = None
    if cfg.sensitivity_gate is not None:
        from dataclasses import replace

        from .quantize import layer_sensitivity

        val_crops, val_kps = _heldout(labels, size)
        sens = layer_sensitivity(fp32.path, crops, val_crops, val_kps, qcfg, gate=cfg.sensitivity_gate,
                                 threads=cfg.threads, progress=progress)
        (out / "int8_sensitivity.md").write_text(sens.to_markdown())
        qcfg = replace(qcfg, exclude_nodes=tuple(qcfg.exclude_nodes) + tuple(sens.exclude_nodes))
    int8_path = out / "student_int8.onnx"
    quantize(fp32.path, int8_path, qcfg, calibration=crops)
    models = {"original": cfg.model, "student_fp32": fp32.path, "student_int8": os.fspath(int8_path)}
    artifacts = [fp32.path, int8_path]
    if cfg.tflite:
        try:
            from .export import export_tflite

            t32 = export_tflite(student, out / "student_fp32.tflite", compression=comp, check_crops=crops[:4])
            qat = {}
            if cfg.tflite_qat_steps:
                from .quantize.qat import QATConfig

                tr, _ = labels.split(0.1, 0)
                aug = PseudoLabelDataset(labels, tr, out_size=size, scale=np.ones(3), shift=np.zeros(3),
                                         augment_cfg=AugmentConfig())
                qat = {"qat": QATConfig(steps=cfg.tflite_qat_steps),
                       "qat_draw": lambda rng, n: np.stack([aug.raw(int(i))[0] for i in rng.integers(0, len(aug), n)])}
            t8 = export_tflite(student, out / "student_int8.tflite", int8=True, calibration=crops,
                               compression=comp, check_crops=crops[:4], **qat)
            models.update(student_fp32_tflite=t32.path, student_int8_tflite=t8.path)
            artifacts += [t32.path, t8.path]
        except ImportError as exc:  # litert-torch is not in the dev extras
            log.warning("no TFLite export: %s", exc)
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
    # DESIGN.md: int8 is kept for a runtime only where it is measured faster than fp32 there
    rec = {"onnxruntime": "student_int8" if lat["student_int8"].p50 < lat["student_fp32"].p50 else "student_fp32"}
    if "student_int8_tflite" in lat:
        rec["litert"] = ("student_int8_tflite" if lat["student_int8_tflite"].p50 < lat["student_fp32_tflite"].p50
                         else "student_fp32_tflite")
    report["recommended"] = rec
    if budget is not None:
        report["budget"] = budget.to_dict()
    if sens is not None:
        report["int8_sensitivity"] = sens.to_dict()
    if cfg.evaluate:
        report["accuracy"] = {k: _evaluate(p, cfg.data_root, cfg.threads) for k, p in models.items()}
    report["seconds"] = time.perf_counter() - t0
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(_markdown(report))
    write_manifest(out, [*artifacts, out / "prune_plan.json"])
    return report


def _heldout(labels, size: int, n: int = 96):
    """Un-augmented held-out *training* crops and the teacher keypoints normalised to them."""
    from .data.augment import AugmentConfig
    from .data.dataset import PseudoLabelDataset

    _, va = labels.split(0.1, 0)
    ds = PseudoLabelDataset(labels, va, out_size=size, scale=np.ones(3), shift=np.zeros(3),
                            augment_cfg=AugmentConfig.none())
    idx = np.linspace(0, len(ds) - 1, num=min(n, len(ds))).round().astype(int)
    raws = [ds.raw(int(i)) for i in idx]
    return [r[0] for r in raws], np.stack([r[1] for r in raws])


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
    if r.get("budget"):
        b = r["budget"]
        ch = b["chosen"]
        lines += ["", f"Budget search ({b['device']}, {b['kind']}): budget {b['budget_ms']:.1f} ms -> channel ratio "
                  f"{ch['ratio']:.2f} ({ch['latency_ms']:.1f} ms, {100 * ch['macs_fraction']:.0f} % MACs) before distillation."]
    if r.get("recommended"):
        lines += ["", "Recommended per runtime (int8 only where measured faster than fp32 here): "
                  + ", ".join(f"{k}: `{v}`" for k, v in r["recommended"].items()) + "."]
    lines += ["", "Latency: ONNX Runtime CPU (LiteRT for .tflite), interleaved rounds, medians; "
              "accuracy: the 161-person evaluation set (ASSETS.md protocol)."]
    return "\n".join(lines) + "\n"
