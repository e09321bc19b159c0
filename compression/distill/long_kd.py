"""Long, time-budgeted distillation of a pruned MoveNet from its unpruned self (+ Thunder labels).

Three teachers' signals on the same augmented crop:

* the **unpruned model** (MoveNet Lightning fp32, frozen): its four head maps (heatmaps / centre
  soft BCE, regression / offset L1, :func:`~.losses.reference_loss`) and its intermediate
  **features** (FPN levels): a 1x1 adapter maps the pruned student's narrower feature to the
  unpruned width, MSE normalised by the teacher feature's energy (FitNets-style feature KD);
* the **Thunder pseudo-labels** from the label cache: offline heatmap KD + the task loss on the
  keypoints (:func:`~.losses.kd_losses`, :func:`~.losses.task_losses`).

The learning rate follows a cosine over a *wall-clock* budget (so a CPU job shared with other
work ends on time with a decayed rate), and a checkpoint (state dict; the pruning plan re-creates
the architecture) is written every ``ckpt_every`` steps. :func:`evaluate_checkpoints` exports
each to ONNX and scores it on the 161-person evaluation set with ``edgepose eval``'s code.

Run as a module (nice it: the machine is shared)::

    nice -n 15 python -m edgepose.compression.distill.long_kd train --out runs/compress_kd50 \\
        --labels runs/cache/labels-8393a9276f1afeaffda7.npz --target-macs 0.5 --minutes 90
    python -m edgepose.compression.distill.long_kd eval --out runs/compress_kd50
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..train import LossModule
from ..data.augment import AugmentConfig
from ..data.dataset import PseudoLabelDataset
from .losses import kd_losses, reference_loss, task_losses

log = logging.getLogger(__name__)

#: FPN outputs of MoveNet (12x12, 24x24 and the 48x48 map every head reads).
DEFAULT_FEATURES = ("c55_re_lu", "c58_re_lu_1", "c61_re_lu_2")


@dataclass(frozen=True)
class LongKDConfig:
    """Options of :func:`train_long_kd`.

    Attributes:
        minutes: wall-clock budget; the cosine learning-rate schedule spans it.
        max_steps: stop earlier after this many steps (0 = only the time budget).
        batch_size / lr / weight_decay / warmup: optimiser.
        w_ref / w_feat / w_kd / w_task: weights of unpruned-head KD, feature KD, Thunder map KD,
            Thunder keypoint task loss.
        features: module names (``body.layers`` keys) whose outputs are distilled.
        ckpt_every: steps between checkpoints.
        val_fraction: source files held out for the validation loss.
        threads: torch threads (1 on a shared machine).
    """

    minutes: float = 90.0
    max_steps: int = 0
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    w_ref: float = 1.0
    w_feat: float = 1.0
    w_kd: float = 0.5
    w_task: float = 0.5
    features: tuple[str, ...] = DEFAULT_FEATURES
    ckpt_every: int = 250
    val_fraction: float = 0.1
    seed: int = 0
    threads: int = 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        return d


class FeatureTap:
    """Forward hooks that keep the outputs of named ``body.layers`` modules of a MoveNetTorch."""

    def __init__(self, net, names):
        self.out: dict[str, torch.Tensor] = {}
        self.handles = [net.body.layers[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def fn(_m, _i, o):
            self.out[name] = o
        return fn

    def close(self):
        for h in self.handles:
            h.remove()


def make_adapters(student, reference, names) -> torch.nn.ModuleDict:
    """1x1 convolutions student width -> reference width per distilled feature."""
    ad = torch.nn.ModuleDict()
    for n in names:
        cs, ct = student.body.layers[n].out_channels, reference.body.layers[n].out_channels
        ad[n] = torch.nn.Conv2d(cs, ct, 1, bias=True)
    return ad


def feature_loss(s: dict, t: dict, adapters) -> torch.Tensor:
    """Sum over features of MSE(adapter(student), teacher) / mean(teacher^2)."""
    tot = 0.0
    for n, a in adapters.items():
        tf = t[n].detach()
        tot = tot + F.mse_loss(a(s[n]), tf) / tf.pow(2).mean().clamp(min=1e-6)
    return tot


def _terms(student, reference, adapters, s_tap, t_tap, batch, cfg: LongKDConfig) -> dict[str, torch.Tensor]:
    heads = student(batch["image"])
    with torch.no_grad():
        ref = reference(batch["image"])
    terms = {"ref": reference_loss(heads, ref)["ref"] * cfg.w_ref}
    if cfg.w_feat and adapters is not None:
        terms["feat"] = feature_loss(s_tap.out, t_tap.out, adapters) * cfg.w_feat
    if cfg.w_kd:
        terms.update({k: v * cfg.w_kd for k, v in kd_losses(heads, batch["maps"]).items()})
    if cfg.w_task:
        terms.update({k: v * cfg.w_task for k, v in task_losses(heads, batch["keypoints"], batch["maps"]).items()})
    return terms


class LongKDLoss(LossModule):
    """Feature + head KD of a pruned MoveNet from its unpruned self and the Thunder labels (a loss
    module: the student and the adapters train, the reference is frozen)."""

    def __init__(self, student, reference, cfg: LongKDConfig):
        super().__init__()
        self.student, self.reference, self.cfg = student, reference, cfg
        self.adapters = make_adapters(student, reference, cfg.features) if cfg.w_feat else None
        self.freeze("reference")
        self.s_tap, self.t_tap = FeatureTap(student, cfg.features), FeatureTap(reference, cfg.features)

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return _terms(self.student, self.reference, self.adapters, self.s_tap, self.t_tap, batch, self.cfg)

    def close(self) -> None:
        self.s_tap.close()
        self.t_tap.close()


def train_long_kd(student, reference, labels, cfg: LongKDConfig, out: str | os.PathLike, *,
                  on_checkpoint=None, device: str = "auto", workers: int = 0, resume: bool = False) -> dict:
    """Distil ``student`` (pruned, trained in place) from ``reference`` (unpruned, frozen) and labels.

    Writes ``out/ckpt_XXXXXX.pt`` (``"step"``, ``"state_dict"`` of the student, ``"seconds"``, and
    the trainer state for ``resume``), ``out/log.jsonl`` (per-step losses) and ``out/long_kd.json``
    (config, validation curve). ``device``: auto / cpu / cuda / mps; ``workers``: DataLoader
    processes. Returns the summary dict.
    """
    from ..train import Trainer, TrainerConfig
    from ..train.data import to_device

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tr_idx, va_idx = labels.split(cfg.val_fraction, cfg.seed)
    size = student.input_size[0]
    kw = dict(out_size=size, scale=student.scale.flatten().numpy(), shift=student.shift.flatten().numpy())
    train_ds = PseudoLabelDataset(labels, tr_idx, augment_cfg=AugmentConfig(), seed=cfg.seed, **kw)
    val_ds = PseudoLabelDataset(labels, va_idx, augment_cfg=AugmentConfig.none(), seed=cfg.seed, **kw)
    val_batches = list(DataLoader(val_ds, batch_size=32, shuffle=False))
    module = LongKDLoss(student, reference, cfg)
    params = [p for p in student.parameters() if p.requires_grad]
    if module.adapters is not None:
        params += list(module.adapters.parameters())
    tcfg = TrainerConfig(steps=cfg.max_steps, minutes=cfg.minutes, batch_size=cfg.batch_size, lr=cfg.lr,
                         weight_decay=cfg.weight_decay, warmup=cfg.warmup, lr_floor=0.01, grad_clip=5.0, seed=cfg.seed,
                         channels_last=False, device=device, workers=workers, ckpt_every=cfg.ckpt_every,
                         eval_at_start=True, progress=False, desc="long-kd")

    def validate(m):
        tot, n = 0.0, 0
        for b in val_batches:
            tt = m(to_device(b, trainer.device))
            tot += float(sum(tt.values())) * len(b["image"])
            n += len(b["image"])
        return tot / max(n, 1)

    summary = {"config": cfg.to_dict(), "n_train": len(train_ds), "n_val": len(val_ds)}

    def checkpoint(step, p):
        r = trainer.result
        summary.update(val_steps=[v["step"] for v in r.val], val=[v["loss"] for v in r.val],
                       ckpts=[{"step": c["step"], "path": c["path"], "seconds": c["seconds"], "val": c.get("loss")}
                              for c in r.checkpoints])
        (out / "long_kd.json").write_text(json.dumps(summary, indent=1))
        if on_checkpoint is not None:
            on_checkpoint(step, p)

    trainer = Trainer(module, train_ds, tcfg, validate=validate, params=params, out=out, save_module=student,
                      on_checkpoint=checkpoint)
    res = trainer.fit(resume=resume)
    module.close()
    step = res.steps
    summary["best"] = res.best
    summary["samples_per_s"] = res.samples_per_s
    summary["seconds"] = res.seconds
    summary["steps"] = step
    (out / "long_kd.json").write_text(json.dumps(summary, indent=1))
    return summary


def build_student(model_path: str, plan: dict):
    """The unpruned imported model and the pruned student re-created from ``plan``."""
    from ..importer import import_movenet
    from ..prune import apply_plan

    net = import_movenet(model_path)
    return net, apply_plan(net, plan)


def evaluate_checkpoints(out: str | os.PathLike, model_path: str, data_root: str, *, threads: int = 1,
                         steps: list[int] | None = None) -> list[dict]:
    """Export every checkpoint under ``out`` to ONNX and score it on the evaluation set.

    Returns rows ``{"step", "pck_torso", "hard_pck_torso", "n_people", "onnx"}`` (also written to
    ``out/pck_vs_steps.json``).
    """
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    from ..export import ExportConfig, export_onnx
    from ..prune import load_plan

    torch.set_num_threads(threads)
    out = Path(out)
    plan = load_plan(out / "prune_plan.json")
    _, student = build_student(model_path, plan)
    res_path = out / "pck_vs_steps.json"
    rows = json.loads(res_path.read_text()) if res_path.is_file() else []
    have = {r["step"] for r in rows}
    for ck in sorted(out.glob("ckpt_*.pt")):
        d = torch.load(ck, map_location="cpu")
        if d["step"] in have or (steps is not None and d["step"] not in steps):
            continue
        student.load_state_dict(d["state_dict"])
        student.eval()
        onnx = out / f"student_{d['step']:06d}.onnx"
        export_onnx(student, onnx, ExportConfig(), compression={"long_kd_step": d["step"]})
        with load_model(str(onnx), num_threads=threads) as m:
            r = evaluate(m, root=data_root, progress=False)
        row = {"step": d["step"], "seconds": d.get("seconds"), "pck_torso": r.row("ALL").pck_torso,
               "hard_pck_torso": r.row("HARD").pck_torso, "n_people": r.row("ALL").n_people, "onnx": str(onnx)}
        log.info("step %d: PCK %.1f (hard %.1f)", row["step"], row["pck_torso"], row["hard_pck_torso"])
        rows.append(row)
        rows.sort(key=lambda r: r["step"])
        res_path.write_text(json.dumps(rows, indent=1))
    return rows


def main(argv=None) -> int:
    from edgepose.assets import assets_dir

    from ..data.labels import load_labels
    from ..prune import PruneConfig, prune, save_plan

    assets = assets_dir(check=False)
    p = argparse.ArgumentParser(description="long feature + head KD of a pruned MoveNet")
    p.add_argument("cmd", choices=["train", "eval"])
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=str(assets / "models/movenet/movenet_lightning_fp32.onnx"))
    p.add_argument("--labels", help="label cache .npz (licence-clean crops)")
    p.add_argument("--data-root", default=str(assets / "data"))
    p.add_argument("--target-macs", type=float, default=0.5)
    p.add_argument("--importance", default="content")
    p.add_argument("--minutes", type=float, default=90.0)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--w-feat", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (augmentation)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    if a.cmd == "eval":
        rows = evaluate_checkpoints(out, a.model, a.data_root, threads=a.threads)
        for r in rows:
            print(f"{r['step']:>6} {r['pck_torso']:.1f} {r['hard_pck_torso']:.1f}")
        return 0
    from ..importer import import_movenet

    labels = load_labels(a.labels)
    net = import_movenet(a.model)
    pcfg = PruneConfig(importance=a.importance, target_macs=a.target_macs)
    batches = None
    if pcfg.importance != "magnitude":
        ds = PseudoLabelDataset(labels, np.arange(0, len(labels), max(1, len(labels) // 64)), out_size=net.input_size[0],
                                scale=net.scale.flatten().numpy(), shift=net.shift.flatten().numpy(),
                                augment_cfg=AugmentConfig.none())
        batches = list(DataLoader(ds, batch_size=16))
    pres = prune(net, pcfg, batches=batches)
    out.mkdir(parents=True, exist_ok=True)
    save_plan(pres.plan, out / "prune_plan.json")
    (out / "prune_summary.json").write_text(json.dumps(pres.summary(), indent=1))
    cfg = LongKDConfig(minutes=a.minutes, max_steps=a.max_steps, lr=a.lr, ckpt_every=a.ckpt_every,
                       w_feat=a.w_feat, threads=a.threads)
    summary = train_long_kd(pres.model, net, labels, cfg, out, device=a.device, workers=a.workers, resume=a.resume)
    print(json.dumps({k: summary[k] for k in ("steps", "seconds", "val")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
