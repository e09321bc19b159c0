"""Training recipes: small YAML files (model, teacher, method, data, schedule) run on the Trainer.

A recipe is validated on load (no torch needed) and every error names the field::

    method: student            # student | okdhp | kd | feature-kd | vit | vitkd | dkd
    model: {head: heatmap, input_size: 64, width: 0.25}
    teacher: models/movenet/movenet_thunder_fp32.onnx      # relative to the assets folder
    data: {media: [data/train_extra/pypi_scikit-image], detector: null, val_fraction: 0.25}
    schedule: {steps: 20, batch_size: 4, lr: 0.002, warmup: 2}   # TrainerConfig fields
    options: {w_spatial: 0.1}  # the method's own options
    seed: 0

``model``: for ``student`` / ``okdhp`` the :class:`~..students.cnn.StudentConfig` fields; for
``kd`` / ``feature-kd`` ``onnx`` (the MoveNet to compress), ``target_macs`` and ``importance``
(pruning); for ``vit`` / ``vitkd`` the :class:`~..students.vit.ViTPoseConfig` fields; for ``dkd``
the :class:`~..students.dkd_model.DKDConfig` fields (see :mod:`.dkd_recipe`: frame pre-training on
``data.media``, then clips of ``data.videos``). ``data`` media are training-pool paths under the
assets folder (the evaluation set is refused).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgepose.errors import ConfigError

from .config import TrainerConfig

log = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
METHODS = ("student", "okdhp", "kd", "feature-kd", "vit", "vitkd", "dkd")
_TOP = {"description": str, "method": str, "model": dict, "teacher": str, "data": dict, "schedule": dict,
        "options": dict, "seed": int}
_DATA = {"media": list, "detector": (str, type(None)), "val_fraction": float, "augment": bool, "cache": str,
         "video_stride": int, "max_frames_per_video": int, "min_teacher_score": float, "videos": list}
_SCHEDULE = {f.name for f in dataclasses.fields(TrainerConfig)} - {"device", "progress", "desc", "seed"}
_KD_MODEL = {"onnx": str, "target_macs": float, "importance": str}


@dataclass(frozen=True)
class Recipe:
    """A validated recipe (see the module docstring)."""

    name: str
    method: str
    model: dict
    teacher: str
    data: dict
    schedule: dict
    options: dict = field(default_factory=dict)
    seed: int = 0
    description: str = ""
    path: str = ""

    def trainer_config(self, **over) -> TrainerConfig:
        try:
            return TrainerConfig(**{"seed": self.seed, **self.schedule, **over})
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"recipe {self.name}: schedule: {e}") from None


def list_recipes() -> list[str]:
    """Names of the recipes shipped in the package."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _check_types(name: str, section: str, d: dict, spec: dict) -> None:
    for k, v in d.items():
        if k not in spec:
            raise ConfigError(f"recipe {name}: unknown field {section}{k!r}; valid: {', '.join(sorted(spec))}")
        want = spec[k]
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            continue
        if want is int and isinstance(v, bool) or not isinstance(v, want):
            names = "/".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise ConfigError(f"recipe {name}: field {section}{k} must be {names}, got {v!r}")


def _dataclass_check(name: str, section: str, cls, d: dict, skip=()) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    bad = [k for k in d if k not in known and k not in skip]
    if bad:
        raise ConfigError(f"recipe {name}: unknown field {section}.{bad[0]}; valid: {', '.join(sorted(known))}")
    try:
        cls(**_tuples({k: v for k, v in d.items() if k not in skip}))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"recipe {name}: {section}: {e}") from None


def _tuples(d: dict) -> dict:
    return {k: tuple(map(tuple, v)) if isinstance(v, list) and v and isinstance(v[0], list)
            else tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """A shipped recipe by name (``smoke``) or a YAML file; ConfigError naming the bad field."""
    import yaml

    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = RECIPE_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        raise ConfigError(f"recipe {str(name_or_path)!r} not found: give a YAML file or one of "
                          f"{', '.join(list_recipes())}")
    name = p.stem
    try:
        d = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"recipe {name}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"recipe {name}: the file must be a mapping of {', '.join(_TOP)}")
    _check_types(name, "", d, _TOP)
    for k in ("method", "model", "data", "schedule"):
        if k not in d:
            raise ConfigError(f"recipe {name}: missing field {k!r}")
    method = d["method"]
    if method not in METHODS:
        raise ConfigError(f"recipe {name}: field method must be one of {', '.join(METHODS)}, got {method!r}")
    data = d["data"]  # media: paths under the assets folder, or [shippable] (the whole reviewed pool)
    _check_types(name, "data.", data, _DATA)
    if not data.get("media") or not all(isinstance(m, str) for m in data["media"]):
        raise ConfigError(f"recipe {name}: field data.media must be a non-empty list of paths")
    if not 0 < data.get("val_fraction", 0.1) < 0.5:
        raise ConfigError(f"recipe {name}: field data.val_fraction must be in (0, 0.5), got {data['val_fraction']!r}")
    sched = d["schedule"]
    bad = [k for k in sched if k not in _SCHEDULE]
    if bad:
        raise ConfigError(f"recipe {name}: unknown field schedule.{bad[0]}; valid: {', '.join(sorted(_SCHEDULE))}")
    model, opts = d["model"], d.get("options") or {}
    if method in ("student", "okdhp", "vit", "vitkd", "dkd") and "teacher" not in d:
        raise ConfigError(f"recipe {name}: missing field 'teacher' (the ONNX model that labels the data)")
    if method in ("student", "okdhp"):
        from ..students.cnn import StudentConfig

        _dataclass_check(name, "model", StudentConfig, model)
    elif method == "dkd":
        from .dkd_recipe import model_config

        model_config(name, model)
        if not data.get("videos") or not all(isinstance(v, str) for v in data["videos"]):
            raise ConfigError(f"recipe {name}: field data.videos must be a non-empty list of training videos "
                              "(paths under the assets folder, or 'temporal')")
        if not data.get("detector"):
            raise ConfigError(f"recipe {name}: field data.detector is needed by dkd (it starts the clips' tracks)")
    elif method in ("kd", "feature-kd"):
        _check_types(name, "model.", model, _KD_MODEL)
        if "onnx" not in model:
            raise ConfigError(f"recipe {name}: missing field model.onnx (the MoveNet ONNX to compress)")
        if not 0 < model.get("target_macs", 1.0) <= 1:
            raise ConfigError(f"recipe {name}: field model.target_macs must be in (0, 1], got {model['target_macs']!r}")
    else:
        from ..students.vit import ViTPoseConfig

        _dataclass_check(name, "model", ViTPoseConfig, model)
    rec = Recipe(name=name, method=method, model=model, teacher=d.get("teacher", ""), data=data, schedule=sched,
                 options=opts, seed=d.get("seed", 0), description=d.get("description", ""), path=str(p))
    rec.trainer_config()  # schedule values
    _options(rec)  # method options
    return rec


def _options(rec: Recipe) -> dict:
    """The method's options, checked (``options.x`` errors)."""
    o, m = dict(rec.options), rec.method
    if m == "student":
        allowed = {"heatmap": {"kind", "w_spatial"}, "simcc": {"sigma", "min_score"},
                   "rle": {"min_score", "normalise"}}[rec.model.get("head", "heatmap")]
    elif m == "okdhp":
        from ..distill.okdhp import OKDHPConfig

        _dataclass_check(rec.name, "options", OKDHPConfig, o)
        return o
    elif m == "kd":
        allowed = {"w_kd", "w_task", "w_ref"}
    elif m == "feature-kd":
        allowed = {"w_ref", "w_feat", "w_kd", "w_task", "features"}
    elif m == "vit":
        allowed = {"w_spatial_kl"}
    elif m == "dkd":
        from .dkd_recipe import check_options

        check_options(rec.name, o)
        return o
    else:
        from ..distill.vitkd import ViTKDConfig

        if "teacher_checkpoint" not in o:
            raise ConfigError(f"recipe {rec.name}: missing field options.teacher_checkpoint (a ViTPose state dict)")
        _dataclass_check(rec.name, "options", ViTKDConfig, o, skip=("teacher_checkpoint", "teacher_model",
                                                                    "w_spatial_kl"))
        return o
    bad = [k for k in o if k not in allowed]
    if bad:
        raise ConfigError(f"recipe {rec.name}: unknown field options.{bad[0]}; valid: {', '.join(sorted(allowed))}")
    return o


def _labels(rec: Recipe, assets: Path, info):
    """Teacher labels of the recipe's media (rank 0 labels, the other ranks read the cache)."""
    from ..data import LabelConfig, label_media, scan_media

    d = rec.data
    cfg = LabelConfig(teacher=str(assets / rec.teacher), detector=str(assets / d["detector"]) if d.get("detector") else None,
                      **{k: d[k] for k in ("video_stride", "max_frames_per_video", "min_teacher_score") if k in d})
    if d["media"] == ["shippable"]:
        from ..data.shippable import shippable_sources

        items = shippable_sources(assets / "data")
    else:
        items = scan_media([assets / m for m in d["media"]])
    cache = d.get("cache", "runs/cache")
    if info.active and not info.is_main:
        import torch.distributed as dist

        dist.barrier()
        return label_media(items, cfg, cache, progress=False)
    labels = label_media(items, cfg, cache, progress=False)
    if info.active:
        import torch.distributed as dist

        dist.barrier()
    return labels


def build(rec: Recipe, labels, *, assets: Path, indices=None):
    """(loss module, train set, held-out set, module whose weights are the result, params or None).

    ``indices``: (train, held-out) label indices instead of the recipe's own split (``edgepose compress``
    passes a split of its training files, so its gate's held-out files stay unseen)."""
    import numpy as np
    import torch

    from ..data.augment import AugmentConfig
    from ..data.dataset import PseudoLabelDataset
    from ..train_student import seed_everything

    seed_everything(rec.seed)
    o, m = dict(rec.options), rec.method
    if rec.method == "dkd":
        raise ConfigError(f"recipe {rec.name}: dkd trains in two phases: use run_recipe / fit_recipe")
    tr_idx, va_idx = indices if indices is not None else labels.split(rec.data.get("val_fraction", 0.1), rec.seed)
    aug = AugmentConfig() if rec.data.get("augment", True) else AugmentConfig.none()

    def sets(size, scale, shift, stride=4):
        kw = dict(out_size=size, scale=np.asarray(scale, np.float32), shift=np.asarray(shift, np.float32), stride=stride)
        return (PseudoLabelDataset(labels, tr_idx, augment_cfg=aug, seed=rec.seed, **kw),
                PseudoLabelDataset(labels, va_idx, augment_cfg=AugmentConfig.none(), seed=rec.seed, **kw))

    params = None
    if m in ("student", "okdhp"):
        from ..students.cnn import StudentConfig, StudentNet

        scfg = StudentConfig(**_tuples(rec.model))
        std = np.asarray(scfg.std, np.float32)
        tr, va = sets(scfg.input_size, 1 / std, -np.asarray(scfg.mean, np.float32) / std)
        if m == "okdhp":
            from ..distill.okdhp import OKDHP, OKDHPConfig

            module = OKDHP(scfg, OKDHPConfig(**_tuples(o)))
            return module, tr, va, module, None
        net = StudentNet(scfg)
        from ..students import HeatmapKD, SimCCKD
        from ..students.rle import RLEObjective

        module = {"heatmap": HeatmapKD, "simcc": SimCCKD, "rle": RLEObjective}[scfg.head](net, **o)
        return module, tr, va, net, None
    if m in ("kd", "feature-kd"):
        from ..importer import import_movenet
        from ..prune import PruneConfig, prune

        net = import_movenet(str(assets / rec.model["onnx"]))
        student, ref = net, None
        if rec.model.get("target_macs", 1.0) < 1:
            import copy

            ref = net
            student = prune(copy.deepcopy(net), PruneConfig(importance=rec.model.get("importance", "magnitude"),
                                                             target_macs=rec.model["target_macs"])).model
        tr, va = sets(student.input_size[0], student.scale.flatten().numpy(), student.shift.flatten().numpy())
        if m == "kd":
            from ..distill.distill import DistillConfig, DistillLoss

            return DistillLoss(student, DistillConfig(**o), ref), tr, va, student, None
        from ..distill.long_kd import LongKDConfig, LongKDLoss

        if ref is None:
            raise ConfigError(f"recipe {rec.name}: feature-kd needs model.target_macs < 1 (a pruned student)")
        module = LongKDLoss(student, ref, LongKDConfig(**_tuples(o)))
        params = [p for p in student.parameters() if p.requires_grad]
        params += list(module.adapters.parameters()) if module.adapters is not None else []
        return module, tr, va, student, params
    from ..distill.vitkd import ViTKD, ViTKDConfig, ViTLoss
    from ..students.vit import MEAN, STD, ViTPose, ViTPoseConfig

    vcfg = ViTPoseConfig(**_tuples(rec.model))
    student = ViTPose(vcfg)
    tr, va = sets(vcfg.input_size[0], np.full(3, 1.0 / STD), np.full(3, -MEAN / STD), stride=vcfg.stride)
    gen = torch.Generator().manual_seed(rec.seed + 1000)
    if m == "vit":
        return ViTLoss(student, None, None, 1.0, o.get("w_spatial_kl", 1.0), gen), tr, va, student, None
    teacher = ViTPose(ViTPoseConfig(**_tuples(o.get("teacher_model", {}))))
    teacher.load_state_dict(torch.load(o["teacher_checkpoint"], map_location="cpu"))
    kcfg = ViTKDConfig(**_tuples({k: v for k, v in o.items() if k not in ("teacher_checkpoint", "teacher_model",
                                                                          "w_spatial_kl")}))
    kd = ViTKD(vcfg.dim, teacher.cfg.dim, vcfg.grid, kcfg)
    module = ViTLoss(student, teacher, kd, kcfg.w_heatmap, o.get("w_spatial_kl", 1.0), gen)
    return module, tr, va, student, list(student.parameters()) + list(kd.parameters())


def fit_recipe(rec: Recipe, labels, out: str | os.PathLike | None, tcfg: TrainerConfig, *, assets: Path,
               indices=None, resume: bool = False, videos=None):
    """Train ``rec`` on ``labels`` (no labelling, no process-group set-up); returns (TrainResult, result module).

    Args:
        indices: (train, held-out) label indices (default: the recipe's own split).
        videos: dkd only: (path, start, stop) training videos (default: the recipe's ``data.videos``).
    """
    from .trainer import Trainer

    if rec.method == "dkd":
        from .dkd_recipe import recipe_videos, train_dkd_recipe

        tr, va = indices if indices is not None else labels.split(rec.data.get("val_fraction", 0.1), rec.seed)
        vids = videos if videos is not None else recipe_videos(rec.data["videos"], assets)
        return train_dkd_recipe(rec, labels, None if out is None else Path(out), tcfg=tcfg, tr_idx=tr, va_idx=va,
                                videos=vids, teacher=str(assets / rec.teacher),
                                detector=str(assets / rec.data["detector"]),
                                cache=rec.data.get("cache", "runs/cache"), resume=resume, progress=tcfg.progress)
    module, tr, va, save, params = build(rec, labels, assets=assets, indices=indices)
    res = Trainer(module, tr, tcfg, val_data=va, params=params, out=out, save_module=save).fit(resume=resume)
    return res, save


def run_recipe(recipe: Recipe | str, out: str | os.PathLike, *, steps: int | None = None, device: str = "auto",
               resume: bool = False, assets: str | os.PathLike | None = None, progress: bool = True):
    """Run a recipe (under torchrun: one process of the job). Returns the :class:`TrainResult`."""
    import yaml

    from .dist import init_distributed, local_rank, pick_device

    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if assets is None:
        from edgepose.assets import assets_dir

        assets = assets_dir(check=False)
    assets = Path(assets)
    over = {"device": device, "progress": progress, "desc": rec.name}
    if steps is not None:
        over["steps"] = steps
    tcfg = rec.trainer_config(**over)
    info = init_distributed(pick_device(device, local_rank()))
    labels = _labels(rec, assets, info)
    out = Path(out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(yaml.safe_dump({"name": rec.name, "method": rec.method, "model": rec.model,
                                                         "teacher": rec.teacher, "data": rec.data,
                                                         "schedule": {**rec.schedule, **({"steps": steps} if steps else {})},
                                                         "options": rec.options, "seed": rec.seed}, sort_keys=False))
    res, save = fit_recipe(rec, labels, out, tcfg, assets=assets, resume=resume)
    if info.is_main:
        import torch

        torch.save(save.state_dict(), out / "model.pt")
    return res


__all__ = ["Recipe", "METHODS", "RECIPE_DIR", "list_recipes", "load_recipe", "run_recipe", "build", "fit_recipe"]
