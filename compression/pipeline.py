"""The whole chain behind ``edgepose compress``.

budget search -> teacher labels (train / held-out split by file) -> candidates -> interleaved
latency (host, measured) + device figure (emulated) -> accuracy gate -> recommendation ->
report (JSON, Markdown, Pareto plot) and manifest.

Candidates: the input model itself (fp32), int8 of the *unpruned* input model (ONNX Runtime
static QDQ with the folded uint8 input; with litert-torch also the sparse-head, centred-input
LiteRT int8), and compress's own candidates (fp32 and int8) made by ``method``
(:mod:`edgepose.compression.methods`: the pruned student by heatmap KD or feature KD, or an OKDHP,
ViTKD or DKD student trained through the recipe machinery). Every one is scored by the gate
(:mod:`edgepose.compression.gate`); none below the floor is recommended.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgepose.errors import ConfigError, MissingFileError

from .methods import DEFAULT_METHOD, check_method, split_crops as _split_crops, tflite_available as _tflite_available

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
        evaluate: score every candidate on the 161-person evaluation set too (when data_root has
            it) and gate on it.
        baseline: an extra file timed and evaluated beside them (the official int8 TFLite); never
            recommended.
        threads: runtime / torch threads.
        device: device profile (name or YAML path): its frame budget sets the pruning ratio
            (:mod:`edgepose.compression.budget`) and the budget the recommendation is checked
            against; each candidate gets the device figure (emulated for a published profile).
        budget: :class:`~edgepose.compression.budget.BudgetConfig` options (e.g. ``budget_ms``,
            ``budget_fraction``, ``ratios``); a non-empty dict also turns the search on.
        floor: the accuracy gate's floor, a fraction of the input model's score on each gate set.
        val_data / val_images: the user's labelled validation set (COCO person-keypoints JSON and
            its image folder, default the JSON's folder); it replaces the teacher-agreement gate.
        heldout_crops: held-out training crops the teacher-agreement gate scores on.
        heldout_fraction: share of the training files held out (the distillation's validation
            files too; never trained or calibrated on); the gate's held-out crops come from them.
        int8_mixed: also an int8 of the input model with its most int8-sensitive convolutions kept
            float (per-layer sensitivity on training crops, not the held-out ones; ~1 min).
        student: train the one-shot pruned + distilled student: True always, False never, None
            (default) only when no int8 of the unpruned model already passes the floor and the budget
            (the report says why it was skipped; ``--student`` trains it anyway).
        progressive: also the progressive, latency-aware pruning candidate
            (:mod:`edgepose.compression.progressive`; options in ``progressive_cfg``).
        train_pool: add the person crops of ``data_root/train_pool`` to the training material (with
            ``shippable_only`` only its licence-clean sources; ignored with ``data``).
        sensitivity_gate: per-layer int8 sensitivity pass for the student's int8 (None = off).
        tflite: also export TFLite candidates (litert-torch; skipped with a note when missing).
        tflite_qat_steps: > 0: the student's int8 TFLite by QAT for this many steps.
        shippable_only: with no ``data``, train only on the licence allow-list.
        method: how compress's own candidates are trained (:data:`~edgepose.compression.methods.METHODS`):
            ``kd`` (default) / ``feature-kd`` train the pruned student; ``okdhp`` / ``vitkd`` / ``dkd`` a
            recipe's architecture from scratch (any method but ``kd`` is trained unless ``student`` is False).
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
    floor: float = 0.97
    val_data: str | None = None
    val_images: str | None = None
    heldout_crops: int = 256
    heldout_fraction: float = 0.2
    int8_mixed: bool = True
    student: bool | None = None
    progressive: bool = False
    progressive_cfg: dict = field(default_factory=dict)
    train_pool: bool = False
    shippable_only: bool = True
    sensitivity_gate: float | None = None
    tflite: bool = True
    tflite_qat_steps: int = 0
    method: str = DEFAULT_METHOD
    version: int = 2

    def __post_init__(self):
        from .gate import check_floor

        check_floor(self.floor)
        check_method(self.method, detector=self.detector)
        if self.heldout_crops < 8:
            raise ConfigError(f"CompressConfig.heldout_crops must be >= 8, got {self.heldout_crops!r}")
        if not 0.0 < self.heldout_fraction < 0.5:
            raise ConfigError(f"CompressConfig.heldout_fraction must be in (0, 0.5), got {self.heldout_fraction!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _device_figures(paths: dict[str, str], profile, threads: int, host, lat) -> tuple[dict, str]:
    """name -> device ms for the ONNX candidates; and what the figure is (``emulated`` / ``measured here``)."""
    from .budget import measure_candidates

    if profile.is_measured:
        return {n: lat[n].p50 for n in paths}, "measured here"
    onnx = {n: p for n, p in paths.items() if p.endswith(".onnx")}
    times, kind = measure_candidates(onnx, profile, threads=threads, host=host)
    return {n: t[1] for n, t in times.items()}, kind


def compress(cfg: CompressConfig, *, progress: bool = True) -> dict:
    """Run the chain; returns the report dict (also ``out/report.json``, ``report.md``, ``pareto.png``)."""
    import torch

    from . import compress_report, gate
    from .latency import runtime_settings
    from .data import LabelConfig, label_media, scan_media, training_sources
    from .data.shippable import shippable_sources
    from .distill import DistillConfig
    from .export import write_manifest
    from .importer import import_movenet
    from .prune import PruneConfig
    from .quantize import QuantizeConfig, quantize

    t0 = time.perf_counter()
    phases: dict[str, float] = {}  # seconds since the start at the end of each phase
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if not os.path.isfile(cfg.teacher):
        raise MissingFileError(f"teacher model not found: {cfg.teacher!r}; pass --teacher with the "
                                "MoveNet Thunder ONNX (../shared/assets/models/movenet/movenet_thunder_fp32.onnx)")
    if cfg.tflite_qat_steps:
        from .quantize.qat import QATConfig

        QATConfig(steps=cfg.tflite_qat_steps)  # a bad value fails here, not after the distillation
    user_val = gate.load_user_val(cfg.val_data, cfg.val_images) if cfg.val_data else None
    dcfg = DistillConfig(**{"val_fraction": cfg.heldout_fraction, **cfg.distill})
    qcfg = QuantizeConfig(**cfg.quantize)
    net = import_movenet(cfg.model).to(memory_format=torch.channels_last)
    size = net.input_size[0]
    pcfg = PruneConfig(**cfg.prune)
    notes, budget, budget_ms, profile, host = [], None, None, None, None
    student_skipped = "turned off (--no-student)" if cfg.student is False else ""
    if cfg.device is not None:
        from edgepose.profiles import load_profile

        profile = load_profile(cfg.device)
    if cfg.device is not None or cfg.budget:
        from .budget import BudgetConfig, BudgetError, _host_measurement, search_budget

        bopts = dict(cfg.budget)
        host = bopts.pop("host", None)  # a measured host profile for the emulator (None: probe once)
        if profile is not None and not profile.is_measured:
            host = _host_measurement(host)
        try:
            budget = search_budget(net, profile=profile, cfg=BudgetConfig(**bopts), workdir=out / "budget", host=host)
            # the candidates were timed with the same ratio in every group: prune that way
            pcfg = replace(pcfg, ratio=budget.chosen.ratio, target_macs=None, global_pruning=False)
        except BudgetError as exc:  # no pruning ratio reaches the budget: the gate still picks a model
            budget = exc.result
            student_skipped = student_skipped or f"no pruning ratio reaches the budget ({exc})"
            notes.append(str(exc))
        budget_ms = budget.budget_ms
    phases["budget_search"] = time.perf_counter() - t0
    if cfg.data:
        items = scan_media(list(cfg.data))
    else:
        items = shippable_sources(cfg.data_root) if cfg.shippable_only else training_sources(cfg.data_root)
        if cfg.train_pool:
            from .data.shippable import shippable_pool
            from .data.sources import pool_sources

            items += shippable_pool(cfg.data_root) if cfg.shippable_only else pool_sources(cfg.data_root)
    labels = label_media(items, LabelConfig(teacher=cfg.teacher, detector=cfg.detector, **cfg.label),
                         cfg.cache_dir, progress=progress, num_threads=cfg.threads)
    phases["labels"] = time.perf_counter() - t0
    # one split for everything: training and calibration use tr only; the gate's held-out set is va
    tr_idx, va_idx = labels.split(dcfg.val_fraction, dcfg.seed)
    crops, _ = _split_crops(labels, tr_idx, size, qcfg.num_calibration)
    ho_crops, ho_kps = _split_crops(labels, va_idx, size, cfg.heldout_crops)
    cands = [gate.Candidate("input_fp32", os.fspath(cfg.model), "the input model, unchanged")]
    artifacts = []
    # int8 of the unpruned input model: ORT static QDQ, input normalisation folded into uint8
    qi = quantize(cfg.model, out / "input_int8.onnx", replace(qcfg, fold_input=True), calibration=crops)
    _tag_input_int8(net, qi.path, labels.path)
    cands.append(gate.Candidate("input_int8_ort", os.fspath(out / "input_int8.onnx"),
                                "input model, int8 ORT static QDQ (folded uint8 input)"))
    artifacts.append(out / "input_int8.onnx")
    phases["input_int8"] = time.perf_counter() - t0
    sens_input = None
    if cfg.int8_mixed:
        from .quantize import layer_sensitivity

        # chosen on training crops of their own (every other training crop), never on the gate's held-out set
        sc, sk = _split_crops(labels, tr_idx[1::2], size, 96, seed=1)
        sens_input = layer_sensitivity(cfg.model, crops, sc, sk, qcfg, gate=0.5, threads=cfg.threads,
                                       progress=progress)
        (out / "input_int8_sensitivity.md").write_text(sens_input.to_markdown())
        if sens_input.exclude_nodes:
            qm = quantize(cfg.model, out / "input_int8_mixed.onnx",
                          replace(qcfg, exclude_nodes=tuple(qcfg.exclude_nodes) + tuple(sens_input.exclude_nodes)),
                          calibration=crops)
            _tag_input_int8(net, qm.path, labels.path)
            cands.append(gate.Candidate("input_int8_ort_mixed", qm.path,
                                        f"input model, int8 ORT with its {len(sens_input.exclude_nodes)} most "
                                        "int8-sensitive convs float"))
            artifacts.append(out / "input_int8_mixed.onnx")
        else:
            notes.append("the full int8 of the input model met the sensitivity gate on training crops: "
                         "no mixed-precision variant")
    phases["input_int8_mixed"] = time.perf_counter() - t0
    if cfg.tflite and _tflite_available():
        from .export import export_tflite

        try:
            t8 = export_tflite(net, out / "input_int8.tflite", int8=True, calibration=crops, check_crops=crops[:4],
                               compression={"int8": "unpruned, sparse heads, centred input"})
            cands.append(gate.Candidate("input_int8_tflite", t8.path,
                                        "input model, int8 LiteRT (sparse heads, centred input)"))
            artifacts.append(Path(t8.path))
        except (RuntimeError, ValueError) as exc:
            notes.append(f"no int8 LiteRT of the input model: {exc}")
    elif cfg.tflite:
        notes.append("litert-torch is not installed: no LiteRT candidates (pip install 'edgepose[compress]', which pins litert-torch beside torch 2.13.0)")
    phases["input_tflite"] = time.perf_counter() - t0
    gate_sets = [gate.USER_VAL if user_val else gate.HELDOUT]
    accuracy = {}
    use_eval = cfg.evaluate and gate.eval_set_available(cfg.data_root)
    if cfg.evaluate and not use_eval:
        notes.append(f"no evaluation set under {cfg.data_root!r}: gated on the held-out set only")
    if use_eval:
        gate_sets.append(gate.EVAL_SET)
    ctx = _GateCtx(cfg, profile, host, ho_crops, ho_kps, user_val, use_eval, accuracy)
    if cfg.student is None and not student_skipped and cfg.method == DEFAULT_METHOD:
        # default: a one-shot pruned student costs minutes and has not passed the gate on MoveNet
        # Lightning; skip it when the unpruned model's int8 already passes the floor and the budget
        ctx.time_and_score(cands)
        pre = gate.select(cands, reference="input_fp32", floor=cfg.floor, budget_ms=budget_ms, gate_sets=gate_sets)
        if pre.name != "input_fp32" and pre.within_budget is not False:
            scores = ", ".join(f"{s} {next(c for c in cands if c.name == pre.name).scores[s]:.1f} >= "
                               f"{pre.thresholds[s]:.1f}" for s in gate_sets)
            student_skipped = (f"`{pre.name}` (the unpruned model, int8) already passes the floor ({scores})"
                               + ("" if budget_ms is None else f" and the {budget_ms:.3g} ms budget")
                               + ": the pruned + distilled student (minutes of distillation) was not trained. "
                               "Add --student to train it anyway, or --progressive for progressive, "
                               "latency-aware pruning")
    phases["pre_gate"] = time.perf_counter() - t0
    comp_report = {}
    if not student_skipped:
        from .methods import train_candidates

        comp_report = train_candidates(cfg, net, labels, tr_idx, va_idx, items, crops, pcfg, dcfg, qcfg, out, cands,
                                       artifacts, notes, progress)
    else:
        log.warning("no pruned student: %s", student_skipped)
    phases["student"] = time.perf_counter() - t0
    if cfg.progressive:
        comp_report["progressive"] = _progressive(cfg, net, labels, tr_idx, crops, out, cands, artifacts, notes,
                                                  ctx, gate_sets)
        phases["progressive"] = time.perf_counter() - t0
    if cfg.baseline:
        cands.append(gate.Candidate("baseline", os.fspath(cfg.baseline), "reference file (--baseline)",
                                    recommendable=False))
    # one interleaved latency run of every candidate; the gate scores each (once) on the held-out sets
    lat, kind = ctx.time_and_score(cands)
    phases["latency_and_gate"] = time.perf_counter() - t0
    cpu = compress_report.host_cpu()
    for p in comp_report.get("progressive", {}).get("points", []):  # their host_ms_* were timed on this host
        p.update(cpu_model=cpu["cpu_model"], isa_flags=cpu["isa_flags"])
    sel = gate.select(cands, reference="input_fp32", floor=cfg.floor, budget_ms=budget_ms, gate_sets=gate_sets)
    report = {"recommended": sel.path, "recommended_name": sel.name, "selection": sel.to_dict(),
              "candidates": [{**c.to_dict(), "cpu_model": cpu["cpu_model"], "isa_flags": cpu["isa_flags"]}
                             for c in cands],
              "config": cfg.to_dict(), "device": cfg.device, "latency_kind": kind, "threads": cfg.threads,
              "host_cpu": cpu, "runtime_settings": runtime_settings(cfg.threads),
              "labels": {"crops": len(labels), "files": len(items), "cache": labels.path,
                         "train_crops": len(tr_idx), "heldout_crops": len(ho_crops),
                         "heldout_files": len({labels.sources[i].split("#")[0] for i in va_idx})},
              "latency_ms": {k: {**v.to_dict(), "threads": cfg.threads, "cpu_model": cpu["cpu_model"],
                                 "isa_flags": cpu["isa_flags"]} for k, v in lat.items()},
              "size_bytes": {c.name: os.path.getsize(c.path) for c in cands},
              "input_int8_ort": {"float_nodes": len(qi.excluded), "input_fold": qi.input_fold},
              "notes": notes, **comp_report}
    if sens_input is not None:
        report["input_int8_sensitivity"] = {"exclude_nodes": sens_input.exclude_nodes,
                                            "fp32_proxy_pck": sens_input.fp32_proxy_pck,
                                            "int8_proxy_pck": sens_input.int8_proxy_pck,
                                            "steps": sens_input.exclusion_steps, "seconds": sens_input.seconds}
    if budget is not None:
        report["budget"] = budget.to_dict()
    if student_skipped:
        report["student_skipped"] = student_skipped
    if accuracy:
        report["accuracy"] = accuracy
    report["seconds"] = time.perf_counter() - t0
    report["phase_seconds"] = {k: round(v - prev, 1) for (k, v), prev in zip(phases.items(), [0.0, *phases.values()])}
    compress_report.write(report, out)
    write_manifest(out, [*artifacts, *([out / "prune_plan.json"] if (out / "prune_plan.json").exists() else [])])
    return report


class _GateCtx:
    """Times the candidates (host + device figure) and scores each on the gate sets, once."""

    def __init__(self, cfg, profile, host, ho_crops, ho_kps, user_val, use_eval, accuracy):
        self.cfg, self.profile, self.host = cfg, profile, host
        self.ho_crops, self.ho_kps, self.user_val, self.use_eval, self.accuracy = (
            ho_crops, ho_kps, user_val, use_eval, accuracy)

    def score(self, path: str, name: str | None = None) -> dict[str, float]:
        from . import gate

        cfg = self.cfg
        sc = {gate.HELDOUT: gate.score_heldout(path, self.ho_crops, self.ho_kps, cfg.threads)}
        if self.user_val:
            sc[gate.USER_VAL] = gate.score_user_val(path, self.user_val, cfg.threads)
        if self.use_eval:
            acc = gate.score_eval_set(path, cfg.data_root, cfg.threads)
            if name:
                self.accuracy[name] = acc
            sc[gate.EVAL_SET] = acc["pck_torso"]
        return sc

    def time_and_score(self, cands) -> tuple[dict, str | None]:
        from .latency import interleaved_latency

        paths = {c.name: c.path for c in cands}
        lat = interleaved_latency(paths, threads=self.cfg.threads)
        dev_ms, kind = ({}, None)
        if self.profile is not None:
            dev_ms, kind = _device_figures(paths, self.profile, self.cfg.threads, self.host, lat)
        for c in cands:
            c.host_ms = lat[c.name].p50
            c.device_ms = dev_ms.get(c.name)
            if not c.scores:
                c.scores.update(self.score(c.path, c.name))
                log.info("%s: %s", c.name, {k: round(v, 1) for k, v in c.scores.items()})
        return lat, kind


def _progressive(cfg, net, labels, tr_idx, crops, out, cands, artifacts, notes, ctx, gate_sets) -> dict:
    """Progressive, latency-aware pruning; the most pruned step that passes the gate becomes a candidate."""
    from . import gate
    from .progressive import ProgressiveConfig, best_passing, run_progressive

    pcfg = ProgressiveConfig(**{"threads": cfg.threads, **cfg.progressive_cfg})
    ref = next(c for c in cands if c.name == "input_fp32")
    if not ref.scores:
        ref.scores.update(ctx.score(ref.path, ref.name))
    thr = {s: cfg.floor * ref.scores[s] for s in gate_sets}
    points = run_progressive(net, labels, tr_idx, pcfg, out / "progressive", score=ctx.score, calibration=crops,
                             floor_ok=lambda sc: all(sc.get(s, -1.0) >= thr[s] - 1e-9 for s in gate_sets))
    best = best_passing(points)
    if best is None:
        notes.append("progressive pruning: already the first step fell below the floor; no candidate")
    else:
        for kind, path, sc in (("int8", best.int8, best.scores_int8), ("fp32", best.fp32, best.scores_fp32)):
            c = gate.Candidate(f"progressive_{kind}", path, f"progressive pruning, {best.step} latency-aware steps "
                               f"({100 * best.macs_fraction:.0f} % MACs) + long KD, {kind}")
            c.scores.update(sc)
            cands.append(c)
            artifacts.append(Path(path))
    return {"config": pcfg.to_dict(), "points": [asdict(p) for p in points],
            "chosen_step": None if best is None else best.step}


def _tag_input_int8(net, path: str, labels_cache: str) -> None:
    """The int8 of the input file carries the ``edgepose.*`` metadata the runtime reads it by."""
    import onnx

    from .export import ExportConfig
    from .export.onnx_export import build_metadata, set_metadata

    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}  # keeps edgepose.quantization
    meta.update(build_metadata(net, ExportConfig(), {"int8_of": "the unpruned input model",
                                                     "labels_cache": os.path.basename(labels_cache)}))
    set_metadata(m, meta)
    onnx.save(m, path)


__all__ = ["CompressConfig", "compress"]
