"""``edgepose compress --method``: the training that makes compress's own candidates, on the one trainer.

* ``kd`` (default): the budget's pruned MoveNet, heatmap KD from the teacher's labels + its unpruned
  self (:func:`~edgepose.compression.distill.distill`, the ``kd`` recipe's loss module);
* ``feature-kd``: the same pruned student trained with the long-KD loss
  (:class:`~edgepose.compression.distill.long_kd.LongKDLoss`: features + heads of the unpruned
  model, the teacher's maps and keypoints; the ``feature-kd`` recipe's loss module);
* ``okdhp``, ``vitkd``, ``dkd``: another architecture trained from scratch through the recipe
  machinery (:func:`~edgepose.compression.train.recipes.build` / ``fit_recipe``) on compress's
  teacher labels: the OKDHP multi-branch heatmap student (best branch exported), a tiny ViT with
  ViTKD from a ViT teacher trained first for the same steps, the DKD temporal student (frame
  pre-training on the labelled crops, then clips of compress's training *videos*). No pruning:
  their size is the recipe's ``model``.

Every method trains on the training files only: the gate's held-out files are never seen (the
recipe methods validate on a split of the training files). Each adds ``<method>_fp32`` and
``<method>_int8`` (ORT static QDQ) candidates the gate scores like the others, at their own input
size (:func:`edgepose.compression.gate.predict_crops` runs them through their runtime card).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("kd", "feature-kd", "okdhp", "vitkd", "dkd")
DEFAULT_METHOD = "kd"
#: methods that train the budget's pruned MoveNet (the others train a recipe's architecture)
PRUNED = ("kd", "feature-kd")
#: the ``edgepose train`` recipe with the same model and loss
RECIPES = {"kd": "kd", "feature-kd": "feature-kd", "okdhp": "okdhp", "vitkd": "vit", "dkd": "dkd"}
#: the ViT teacher of ``vitkd`` (the C12 ablation's: dim 128), trained on the same labels first
VIT_TEACHER = {"input_size": [128, 128], "patch": 8, "dim": 128, "depth": 4, "heads": 4}


def check_method(method: str, *, detector: str | None = None) -> str:
    """A valid ``--method`` value (ConfigError naming the choices); ``dkd`` also needs a detector."""
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is invalid: one of {', '.join(METHODS)} "
                          f"(default {DEFAULT_METHOD})")
    if method == "dkd" and not detector:
        raise ConfigError("--method dkd needs --detector (MoveNet MultiPose ONNX): it starts the tracks of its "
                          "training clips; or train it alone with 'edgepose train dkd --out DIR'")
    return method


def split_crops(labels, idx: np.ndarray, size: int, n: int, *, seed: int = 0):
    """``n`` un-augmented (crop, teacher keypoints) pairs spread over the label indices ``idx``."""
    from .data.augment import AugmentConfig
    from .data.dataset import PseudoLabelDataset

    ds = PseudoLabelDataset(labels, idx, out_size=size, scale=np.ones(3), shift=np.zeros(3),
                            augment_cfg=AugmentConfig.none(), seed=seed)
    take = np.linspace(0, len(ds) - 1, num=min(n, len(ds))).round().astype(int)
    raws = [ds.raw(int(i)) for i in take]
    return [r[0] for r in raws], np.stack([r[1] for r in raws])


def tflite_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("litert_torch") is not None


def train_split(labels, tr_idx: np.ndarray, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) indices inside the training files ``tr_idx``, grouped by source file."""
    files = sorted({labels.sources[i].split("#")[0] for i in tr_idx})
    val = set(np.random.default_rng(seed).permutation(files)[: max(1, int(round(len(files) * fraction)))])
    is_val = np.array([labels.sources[i].split("#")[0] in val for i in tr_idx])
    if is_val.all():  # a single training file
        return tr_idx, tr_idx[:0]
    return tr_idx[~is_val], tr_idx[is_val]


# -- the pruned MoveNet: kd / feature-kd ----------------------------------------------------------------
def train_pruned(method: str, student, net, labels, tr_idx, va_idx, dcfg, out: Path, progress: bool) -> dict:
    """Train the pruned ``student`` in place with ``method`` (kd / feature-kd); returns the report entry.

    Both train on ``tr_idx``; ``va_idx`` (the gate's held-out files) only gives the held-out loss curve."""
    dcfg = replace(dcfg, batch_size=max(1, min(dcfg.batch_size, len(tr_idx))))  # a handful of training crops
    if method == "kd":
        from .distill import distill

        drep = distill(student, labels, dcfg, reference=net, progress=progress)
        drep.save(out)
        return {"method": "kd", "seconds": drep.seconds, "val": drep.val, "val_steps": drep.val_steps}
    import torch

    from .data.augment import AugmentConfig
    from .data.dataset import PseudoLabelDataset
    from .distill.long_kd import LongKDConfig, LongKDLoss
    from .train import Trainer, TrainerConfig
    from .train.recipes import _tuples, load_recipe

    if dcfg.threads:
        torch.set_num_threads(dcfg.threads)
    opts = load_recipe(RECIPES[method]).options  # the recipe's loss weights
    module = LongKDLoss(student, net, LongKDConfig(**_tuples(opts)))
    kw = dict(out_size=student.input_size[0], scale=student.scale.flatten().numpy(),
              shift=student.shift.flatten().numpy())
    tr = PseudoLabelDataset(labels, tr_idx, augment_cfg=dcfg.augment, seed=dcfg.seed, **kw)
    va = PseudoLabelDataset(labels, va_idx, augment_cfg=AugmentConfig.none(), seed=dcfg.seed, **kw)
    params = [p for p in student.parameters() if p.requires_grad]
    params += list(module.adapters.parameters()) if module.adapters is not None else []
    tcfg = TrainerConfig(steps=dcfg.steps, batch_size=dcfg.batch_size, lr=dcfg.lr, weight_decay=dcfg.weight_decay,
                         warmup=dcfg.warmup, grad_clip=5.0, seed=dcfg.seed, channels_last=False,
                         eval_every=dcfg.eval_every, eval_at_start=True, progress=progress, desc="feature-kd")
    res = Trainer(module, tr, tcfg, val_data=va, params=params, out=out / "feature_kd", save_module=student).fit()
    module.close()
    student.eval()
    return {"method": "feature-kd", "options": opts, "seconds": res.seconds, "samples_per_s": res.samples_per_s,
            "val": [v["loss"] for v in res.val], "val_steps": [v["step"] for v in res.val]}


# -- another architecture: okdhp / vitkd / dkd -----------------------------------------------------------
def _tcfg(rec, steps: int, threads: int, progress: bool, desc: str, n_fit: int):
    """The recipe's schedule for ``steps`` steps (its batch capped at the training crops there are)."""
    batch = max(1, min(int(rec.schedule.get("batch_size", 16)), n_fit))
    return rec.trainer_config(steps=steps, minutes=0.0, eval_every=0, ckpt_every=0, workers=0, threads=threads,
                              batch_size=batch, progress=progress, desc=desc)


def _fit(rec, labels, sub, tcfg, out: Path, assets: Path):
    """build + Trainer, as ``fit_recipe``, keeping the held-out set (OKDHP picks its branch on it)."""
    from .train import Trainer
    from .train.recipes import build

    module, tr, va, save, params = build(rec, labels, assets=assets, indices=sub)
    res = Trainer(module, tr, tcfg, val_data=va if len(va) else None, params=params, out=out,
                  save_module=save).fit()
    return res, module, save, va


def _clip_videos(items, labels, va_idx) -> list[tuple[str, int, int | None]]:
    """compress's training videos minus the gate's held-out files."""
    held = {os.path.realpath(labels.sources[i].split("#")[0]) for i in va_idx}
    return [(it.path, it.start, it.stop) for it in items
            if it.kind == "video" and os.path.realpath(it.path) not in held]


def train_recipe_method(method: str, cfg, labels, tr_idx, va_idx, items, out: Path, progress: bool):
    """Train ``method``'s architecture on compress's labels; returns (torch model, export kind, report)."""
    import torch

    from .train.recipes import _options, load_recipe

    steps = int(cfg.distill.get("steps", 250))
    assets = Path(cfg.data_root).resolve().parent
    sub = train_split(labels, tr_idx, seed=int(cfg.distill.get("seed", 0)))
    wdir = out / method.replace("-", "_")
    n_fit = len(sub[0])
    rep = {"method": method, "recipe": RECIPES[method], "steps": steps, "fit_crops": len(sub[0]),
           "val_crops": len(sub[1])}
    if method == "dkd":
        from .train.dkd_recipe import train_dkd_recipe

        rec = load_recipe("dkd")
        videos = _clip_videos(items, labels, va_idx)
        if not videos:
            raise ConfigError("--method dkd trains on clips of training videos, and the training material has none "
                              "outside the held-out files; add videos with --data, or train it alone with "
                              "'edgepose train dkd --out DIR'")
        tcfg = _tcfg(rec, steps, cfg.threads, progress, "dkd", n_fit)
        res, model = train_dkd_recipe(rec, labels, wdir, tcfg=tcfg,
                                      tr_idx=sub[0], va_idx=sub[1], videos=videos, teacher=cfg.teacher,
                                      detector=cfg.detector, cache=cfg.cache_dir, progress=progress)
        rep.update(train=_summary(res), videos=len(videos))
        return model, "dkd", rep
    if method == "okdhp":
        rec = load_recipe("okdhp")
        res, module, _, va = _fit(rec, labels, sub, _tcfg(rec, steps, cfg.threads, progress, "okdhp", n_fit), wdir,
                                  assets)
        loader = torch.utils.data.DataLoader(va if len(va) else _fit_set(rec, labels, sub, assets), batch_size=16)
        net, branch, losses = module.best_student(loader)
        rep.update(train=_summary(res), branch=branch, branch_losses=losses)
        return net.eval(), "student", rep
    # vitkd: the ViT teacher (heatmap KD, same steps), then the student with ViTKD + heatmap KD
    vit = load_recipe("vit")
    teacher_rec = replace(vit, name="vitkd-teacher", model=VIT_TEACHER)
    t_cfg = _tcfg(vit, steps, cfg.threads, progress, "vit-teacher", n_fit)
    res_t, _, teacher, _ = _fit(teacher_rec, labels, sub, t_cfg, wdir / "teacher", assets)
    ckpt = wdir / "teacher.pt"
    torch.save(teacher.state_dict(), ckpt)
    rec = replace(vit, name="vitkd", method="vitkd",
                  options={"teacher_checkpoint": str(ckpt), "teacher_model": VIT_TEACHER, **vit.options})
    _options(rec)
    res, _, student, _ = _fit(rec, labels, sub, _tcfg(vit, steps, cfg.threads, progress, "vitkd", n_fit), wdir, assets)
    rep.update(train=_summary(res), teacher_train=_summary(res_t), teacher_model=VIT_TEACHER)
    return student.eval(), "vit", rep


def _fit_set(rec, labels, sub, assets):
    from .train.recipes import build

    return build(rec, labels, assets=assets, indices=(sub[0], sub[0][:64]))[2]


def _summary(res) -> dict:
    s = res.summary()
    return {k: s[k] for k in ("steps", "seconds", "samples_per_s", "device", "final_loss")}


def card_inputs(path: str, crops) -> list:
    """Calibration feeds of a student / DKD ONNX: each uint8 crop through the card's crop + normalisation
    (DKD: a keyframe's kernels fed back as a tracked frame, so both paths get ranges)."""
    import json

    import onnx

    from edgepose.models._crop import Roi, crop

    m = onnx.load(path, load_external_data=False)
    meta = {p.key: p.value for p in m.metadata_props}
    mean = np.asarray(json.loads(meta["edgepose.mean"]), np.float32)
    std = np.asarray(json.loads(meta["edgepose.std"]), np.float32)
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    h, w = shape[2], shape[3]
    xs = []
    for c in crops:
        img, _ = crop(c, Roi.full_frame(c.shape[1], c.shape[0]), w, h)
        xs.append(((img.astype(np.float32) - mean) / std).transpose(2, 0, 1).copy())
    if meta.get("edgepose.card") != "dkd":
        return xs
    from .quantize.sensitivity import _session

    sess = _session(path, 1)
    names = [i.name for i in sess.get_inputs()]
    state = json.loads(meta["edgepose.state_inputs"])
    zeros = np.zeros([d.dim_value for d in next(i for i in m.graph.input if i.name == state["state"])
                      .type.tensor_type.shape.dim], np.float32)
    feeds = []
    for x in xs:
        key = {names[0]: x[None], state["state"]: zeros, state["gate"]: np.zeros(1, np.float32)}
        kern = sess.run(None, key)[1]
        feeds += [key, {names[0]: x[None], state["state"]: kern, state["gate"]: np.ones(1, np.float32)}]
    return feeds


def export_recipe_model(model, kind: str, fp32: Path, crops, provenance: dict) -> dict:
    """ONNX fp32 of a recipe-trained model, read by its runtime card (student / dkd); returns parity info."""
    import json

    import cv2

    if kind == "student":
        from .export.students import export_onnx_student

        s = model.cfg.input_size
        check = [cv2.resize(c, (s, s), interpolation=cv2.INTER_AREA) for c in crops[:4]]
        r = export_onnx_student(model, fp32, check_crops=check, provenance=provenance)
        return {"max_abs_diff": r.max_abs, "max_px": r.max_px}
    if kind == "vit":
        from .students.vit import export_heatmap_student

        r = export_heatmap_student(model, fp32, extra_metadata={"provenance": json.dumps(provenance, sort_keys=True)})
        return {"max_abs_diff": r["max_abs_diff"]}
    from .students.dkd_model import export_dkd

    r = export_dkd(model, fp32, extra_metadata={"provenance": json.dumps(provenance, sort_keys=True)})
    return {"max_abs_diff": r["max_abs_diff"]}


WHAT = {"okdhp": "OKDHP multi-branch heatmap student (best branch)", "vitkd": "tiny ViT, ViTKD from a ViT teacher",
        "dkd": "DKD temporal student (scored per frame: a still crop is a keyframe)"}


def train_candidates(cfg, net, labels, tr_idx, va_idx, items, crops, pcfg, dcfg, qcfg, out, cands, artifacts,
                     notes, progress) -> dict:
    """Train compress's own candidates with ``cfg.method``, export fp32 + int8 and append them."""
    import json

    from . import gate
    from .quantize import quantize

    method = cfg.method
    if method in PRUNED:
        return _pruned_candidates(cfg, net, labels, tr_idx, va_idx, crops, pcfg, dcfg, qcfg, out, cands,
                                  artifacts, notes, progress)
    model, kind, rep = train_recipe_method(method, cfg, labels, tr_idx, va_idx, items, out, progress)
    name = method.replace("-", "_")
    fp32, int8 = out / f"{name}_fp32.onnx", out / f"{name}_int8.onnx"
    prov = {"method": method, "recipe": RECIPES[method], "steps": rep["steps"],
            "labels_cache": os.path.basename(labels.path)}
    rep["export"] = export_recipe_model(model, kind, fp32, crops, json.loads(json.dumps(prov)))
    quantize(fp32, int8, replace(qcfg, fold_input=False), calibration=card_inputs(os.fspath(fp32), crops))
    what = f"{WHAT[method]}, {rep['steps']} steps from scratch"
    cands += [gate.Candidate(f"{name}_fp32", os.fspath(fp32), what + ", fp32"),
              gate.Candidate(f"{name}_int8", os.fspath(int8), what + ", int8 ORT")]
    artifacts += [fp32, int8]
    return {"method": rep}


def _pruned_candidates(cfg, net, labels, tr_idx, va_idx, crops, pcfg, dcfg, qcfg, out, cands, artifacts, notes,
                       progress) -> dict:
    """Prune (the budget's ratio) + kd / feature-kd + export + int8 the student; appends its candidates."""
    import torch

    from . import gate
    from .data.augment import AugmentConfig
    from .data.dataset import PseudoLabelDataset
    from .export import ExportConfig, export_onnx
    from .prune import prune, save_plan
    from .quantize import quantize

    size = net.input_size[0]
    batches = None
    if pcfg.importance != "magnitude":
        ds = PseudoLabelDataset(labels, tr_idx[:: max(1, len(tr_idx) // 64)], out_size=size,
                                scale=net.scale.flatten().numpy(), shift=net.shift.flatten().numpy(),
                                augment_cfg=AugmentConfig.none())
        batches = list(torch.utils.data.DataLoader(ds, batch_size=16))
    pres = prune(net, pcfg, batches=batches)
    save_plan(pres.plan, out / "prune_plan.json")
    student = pres.model.to(memory_format=torch.channels_last)
    trep = train_pruned(cfg.method, student, net, labels, tr_idx, va_idx, dcfg, out, progress)
    comp = {"prune": pcfg.to_dict(), "prune_summary": pres.summary(), "distill": dcfg.to_dict(),
            "method": cfg.method, "labels_cache": os.path.basename(labels.path)}
    fp32 = export_onnx(student, out / "student_fp32.onnx", ExportConfig(), compression=comp, check_crops=crops[:4])
    sens = None
    if cfg.sensitivity_gate is not None:
        from .quantize import layer_sensitivity

        # the sensitivity pass scores on training crops of its own (the gate's held-out set stays unseen)
        val_crops, val_kps = split_crops(labels, tr_idx[1::2], size, 96, seed=1)
        sens = layer_sensitivity(fp32.path, crops, val_crops, val_kps, qcfg, gate=cfg.sensitivity_gate,
                                 threads=cfg.threads, progress=progress)
        (out / "int8_sensitivity.md").write_text(sens.to_markdown())
        qcfg = replace(qcfg, exclude_nodes=tuple(qcfg.exclude_nodes) + tuple(sens.exclude_nodes))
    quantize(fp32.path, out / "student_int8.onnx", qcfg, calibration=crops)
    how = "distilled" if cfg.method == "kd" else "feature + head KD (long-KD loss)"
    what = f"pruned (ratio {pcfg.ratio:.2f}, {100 * pres.summary()['macs_fraction']:.0f} % MACs) + {how}"
    cands += [gate.Candidate("student_fp32", fp32.path, what + ", fp32"),
              gate.Candidate("student_int8", os.fspath(out / "student_int8.onnx"), what + ", int8 ORT")]
    artifacts += [Path(fp32.path), out / "student_int8.onnx"]
    if cfg.tflite and tflite_available():
        try:
            from .export import export_tflite

            qat = {}
            if cfg.tflite_qat_steps:
                from .quantize.qat import QATConfig

                aug = PseudoLabelDataset(labels, tr_idx, out_size=size, scale=np.ones(3), shift=np.zeros(3),
                                         augment_cfg=AugmentConfig())
                qat = {"qat": QATConfig(steps=cfg.tflite_qat_steps),
                       "qat_draw": lambda rng, n: np.stack([aug.raw(int(i))[0] for i in rng.integers(0, len(aug), n)])}
            t8 = export_tflite(student, out / "student_int8.tflite", int8=True, calibration=crops,
                               compression=comp, check_crops=crops[:4], **qat)
            cands.append(gate.Candidate("student_int8_tflite", t8.path, what + ", int8 LiteRT"))
            artifacts.append(Path(t8.path))
        except (ImportError, RuntimeError) as exc:
            notes.append(f"no student TFLite: {exc}")
    rep = {"prune": pres.summary(), "distill": trep, "export_parity_px": fp32.max_px,
           "macs": {"original": pres.macs[0], "student": pres.macs[1]}}
    if sens is not None:
        rep["int8_sensitivity"] = sens.to_dict()
    return rep


__all__ = ["METHODS", "DEFAULT_METHOD", "PRUNED", "RECIPES", "check_method", "card_inputs", "split_crops",
           "train_candidates", "train_pruned", "train_recipe_method", "train_split"]
