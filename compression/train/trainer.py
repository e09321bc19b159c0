"""The one training loop of ``edgepose.compression``: a loss module, data and a config in; a trained
module, checkpoints, a JSON-lines log, a loss plot and a summary out.

A *loss module* is an ``nn.Module`` whose ``forward(batch)`` returns a dict of named scalar loss
terms (or one tensor). Their sum is minimised; keys starting with ``_`` are logged, not summed. The
module holds the student and any training-only parts (adapters, flows, frozen teachers: see
:class:`LossModule`).

Data is a map-style Dataset (sampled by :class:`~.data.EpochSampler`, loaded by persistent
workers), a callable ``draw(step) -> batch`` (batches built in the training process from the
caller's own RNG), or None (full-batch: ``forward(None)``).

Run under ``torchrun --nproc-per-node N`` the module is wrapped in DistributedDataParallel (NCCL on
CUDA, gloo on CPU); each rank takes ``batch_size / N`` samples; rank 0 logs, validates and writes
checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from edgepose.errors import ConfigError

from .config import TrainerConfig
from .data import batch_len, make_loader, to_device
from .dist import DistInfo, init_distributed, local_rank, pick_device
from .schedule import lr_factor

log = logging.getLogger(__name__)


class LossModule(nn.Module):
    """Base for loss modules with frozen parts: :meth:`freeze` keeps a submodule in eval mode with
    no gradients whatever ``train()`` is called with."""

    def freeze(self, *names: str) -> None:
        fz = self.__dict__.setdefault("_frozen_names", [])
        for n in names:
            m = getattr(self, n)
            if m is None:
                continue
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            fz.append(n)

    def train(self, mode: bool = True):
        super().train(mode)
        for n in self.__dict__.get("_frozen_names", []):
            getattr(self, n).eval()
        return self


def total_loss(terms) -> torch.Tensor:
    """The sum of a loss module's terms (``_``-prefixed entries are metrics, not summed)."""
    if isinstance(terms, torch.Tensor):
        return terms
    return sum(v for k, v in terms.items() if not k.startswith("_"))


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did.

    Attributes:
        steps: optimiser steps done (in total, resumed ones included).
        history: one dict per step of this run: ``step``, ``loss``, ``lr``, ``t`` (s) and every term.
        val: held-out results: ``{"step", "loss", ...}`` (``loss`` = the held-out loss).
        seconds: wall time of this run; train_seconds: without validation and checkpoints.
        samples_per_s: training samples (all ranks) per second of train_seconds.
        best: the checkpoint with the lowest held-out loss ``{"step", "path", "loss"}`` (None without).
        checkpoints: ``{"step", "path", "seconds"}`` of each checkpoint written.
        world / device: processes and device.
    """

    steps: int = 0
    history: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float = 0.0
    samples_per_s: float = 0.0
    best: dict | None = None
    checkpoints: list[dict] = field(default_factory=list)
    world: int = 1
    device: str = "cpu"

    def summary(self) -> dict:
        return {"steps": self.steps, "seconds": round(self.seconds, 2), "train_seconds": round(self.train_seconds, 2),
                "samples_per_s": round(self.samples_per_s, 2), "world": self.world, "device": self.device,
                "best": self.best, "val": self.val, "checkpoints": self.checkpoints,
                "final_loss": self.history[-1]["loss"] if self.history else None}


def _rng_state() -> dict:
    """torch / numpy / python RNG states in types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    ver, internal, gnext = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": [ver, list(internal), gnext]}


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    kind, keys, pos, has_gauss, gauss = st["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    ver, internal, gnext = st["python"]
    random.setstate((ver, tuple(internal), gnext))


def _float_terms(terms) -> dict[str, float]:
    if isinstance(terms, torch.Tensor):
        return {}
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in terms.items()}


class Trainer:
    """Optimise a loss module (see the module docstring).

    Args:
        module: the loss module (trained in place; moved back to its device and left in eval mode).
        data: Dataset, ``draw(step)`` callable or None.
        cfg: options.
        val_data: held-out Dataset or list of batches for the default held-out loss.
        validate: ``validate(module) -> float | dict`` (dict: ``"loss"`` + extras) instead of the
            default (mean total loss over ``val_data``); runs on rank 0 in no-grad, eval mode.
        params: parameters to optimise (default: every one of ``module`` that requires grad).
        out: folder for ``log.jsonl``, ``ckpt_XXXXXX.pt``, ``summary.json`` and ``loss.png`` (None: nothing written).
        save_module: whose ``state_dict`` a checkpoint's ``"state_dict"`` holds (default ``module``).
        on_checkpoint: ``on_checkpoint(step, path)`` after each checkpoint (rank 0).
    """

    def __init__(self, module: nn.Module, data=None, cfg: TrainerConfig = TrainerConfig(), *, val_data=None,
                 validate: Callable | None = None, params=None, out: str | os.PathLike | None = None,
                 save_module: nn.Module | None = None, on_checkpoint: Callable | None = None):
        self.module, self.data, self.cfg = module, data, cfg
        self.val_data, self._validate_fn = val_data, validate
        self.params = params
        self.out = Path(out) if out is not None else None
        self.save_module = save_module if save_module is not None else module
        self.on_checkpoint = on_checkpoint
        self.info, self.device = DistInfo(), torch.device("cpu")
        self.result = TrainResult()

    # -- helpers -------------------------------------------------------------------------------------
    def _autocast(self):
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _val_batches(self):
        vd = self.val_data
        if isinstance(vd, torch.utils.data.Dataset):
            return torch.utils.data.DataLoader(vd, batch_size=self.cfg.batch_size, shuffle=False,
                                               generator=torch.Generator().manual_seed(self.cfg.seed))
        return vd or []

    def _default_validate(self, module) -> float:
        tot, n = 0.0, 0
        for b in self._val_batches():
            b = to_device(b, self.device, self.cfg.channels_last)
            k = batch_len(b)
            tot += float(total_loss(module(b))) * k
            n += k
        return tot / max(n, 1)

    def validate(self, step: int) -> dict | None:
        """Run the held-out evaluation now (rank 0) and record it."""
        if not self.info.is_main or (self._validate_fn is None and self.val_data is None):
            return None
        t = time.perf_counter()
        was = self.module.training
        self.module.eval()
        with torch.no_grad(), self._autocast():
            r = (self._validate_fn or self._default_validate)(self.module)
        self.module.train(was)
        row = {"step": step, **(r if isinstance(r, dict) else {"loss": float(r)})}
        self.result.val.append(row)
        self._write({"event": "val", **row})
        log.info("%s step %d: held-out loss %.4f", self.cfg.desc, step, row.get("loss", float("nan")))
        self._pause += time.perf_counter() - t
        return row

    def _write(self, rec: dict) -> None:
        if self._logf is not None:
            self._logf.write(json.dumps(rec) + "\n")

    def _latest_checkpoint(self) -> Path | None:
        if self.out is None:
            return None
        cks = sorted(self.out.glob("ckpt_*.pt"))
        return cks[-1] if cks else None

    # -- checkpoints ---------------------------------------------------------------------------------
    def checkpoint(self, step: int, opt, sched) -> Path | None:
        """Validate (if there is held-out data) and write ``ckpt_{step:06d}.pt`` (rank 0)."""
        if not self.info.is_main or self.out is None:
            return None
        row = self.validate(step) if not (self.result.val and self.result.val[-1]["step"] == step) \
            else self.result.val[-1]
        t = time.perf_counter()
        path = self.out / f"ckpt_{step:06d}.pt"
        cpu = lambda sd: {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in sd.items()}  # noqa: E731
        state = {"step": step, "seconds": self._elapsed(), "state_dict": cpu(self.save_module.state_dict()),
                 "val": row, "trainer": {
                     "module": cpu(self.module.state_dict()) if self.save_module is not self.module else None,
                     "optimizer": opt.state_dict(), "sched": sched.state_dict() if sched is not None else None,
                     "epoch": self._epoch, "pos": self._pos, "elapsed": self._elapsed(),
                     "rng": _rng_state(),
                     "data": self.data.state_dict() if hasattr(self.data, "state_dict") else None,
                     "val": self.result.val, "checkpoints": self.result.checkpoints, "best": self.result.best}}
        torch.save(state, path)
        ck = {"step": step, "path": str(path), "seconds": round(self._elapsed(), 1)}
        if row is not None and math.isfinite(row.get("loss", float("nan"))):
            ck["loss"] = row["loss"]
            if self.result.best is None or row["loss"] < self.result.best["loss"]:
                self.result.best = {"step": step, "path": str(path), "loss": row["loss"]}
        self.result.checkpoints.append(ck)
        self._write({"event": "checkpoint", **ck})
        if self._logf is not None:
            self._logf.flush()
        self._pause += time.perf_counter() - t
        if self.on_checkpoint is not None:
            self.on_checkpoint(step, path)
        return path

    def _resume(self, opt, sched) -> int:
        path = self._latest_checkpoint()
        if path is None:
            return 0
        d = torch.load(path, map_location="cpu")
        tr = d["trainer"]
        (self.module if tr["module"] is not None else self.save_module).load_state_dict(tr["module"] or d["state_dict"])
        opt.load_state_dict(tr["optimizer"])
        if sched is not None and tr["sched"] is not None:
            sched.load_state_dict(tr["sched"])
        self._epoch, self._pos, self._offset = tr["epoch"], tr["pos"], tr["elapsed"]
        _set_rng_state(tr["rng"])
        if tr.get("data") is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(tr["data"])
        self.result.val, self.result.checkpoints, self.result.best = tr["val"], tr["checkpoints"], tr["best"]
        log.info("resumed from %s (step %d)", path, d["step"])
        return int(d["step"])

    # -- the loop ------------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self._offset + time.perf_counter() - self._t0

    def _batches(self, step: int):
        cfg, info = self.cfg, self.info
        if isinstance(self.data, torch.utils.data.Dataset):
            if cfg.batch_size % info.world:
                raise ConfigError(f"TrainerConfig.batch_size {cfg.batch_size} is not divisible by the "
                                  f"{info.world} processes")
            per = cfg.batch_size // info.world
            loader, batches = make_loader(self.data, batch_size=per, rank=info.rank, world=info.world, seed=cfg.seed,
                                          workers=cfg.workers, prefetch=cfg.prefetch,
                                          pin_memory=self.device.type == "cuda")
            if len(batches.sampler) < per:
                raise ConfigError(f"the training set has {len(self.data)} samples: fewer than one batch of "
                                  f"TrainerConfig.batch_size {cfg.batch_size}")
            while True:
                batches.set_epoch(self._epoch, self._pos)
                for b in loader:
                    self._pos += 1
                    yield b
                self._epoch, self._pos = self._epoch + 1, 0
        while True:
            yield self.data(step) if callable(self.data) else None
            step += 1

    def _sync(self, values: list[float]) -> list[list[float]]:
        """Every rank's ``values`` (a list per rank)."""
        if not self.info.active:
            return [values]
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        out = [torch.empty_like(t) for _ in range(self.info.world)]
        dist.all_gather(out, t)
        return [o.tolist() for o in out]

    def _time_up(self) -> tuple[bool, float]:
        el = self._elapsed()
        if self.info.active:
            import torch.distributed as dist

            t = torch.tensor([el], dtype=torch.float64, device=self.device)
            dist.broadcast(t, 0)
            el = float(t)
        return el >= self.cfg.minutes * 60.0, el

    def fit(self, resume: bool = False) -> TrainResult:
        """Train; with ``resume``, continue from the latest checkpoint in ``out``."""
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = dev = pick_device(cfg.device, local_rank())
        self.info = info = init_distributed(dev)
        module = self.module
        orig = next(module.parameters()).device if any(True for _ in module.parameters()) else torch.device("cpu")
        module.to(dev)
        if cfg.channels_last:
            module.to(memory_format=torch.channels_last)
        params = list(self.params) if self.params is not None else [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f"{cfg.desc}: the loss module has no trainable parameter")
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        opt = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=cfg.onecycle_pct)
                 if cfg.schedule == "onecycle" else None)
        net = module
        if info.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(module, device_ids=[dev.index] if dev.type == "cuda" else None,
                      find_unused_parameters=cfg.find_unused_parameters)
        self.result = res = TrainResult(world=info.world, device=str(dev))
        self._epoch = self._pos = 0
        self._offset, self._pause, self._logf = 0.0, 0.0, None
        step = self._resume(opt, sched) if resume else 0
        if self.out is not None and info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._logf = open(self.out / "log.jsonl", "a" if resume else "w")
            self._write({"event": "start", "world": info.world, "ranks": list(range(info.world)), "device": str(dev),
                         "start_step": step, "config": cfg.to_dict()})
        self._t0 = time.perf_counter()
        if cfg.eval_at_start and step == 0:
            self.validate(0)
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps or None, initial=step, desc=cfg.desc, unit="step",
                   disable=not (cfg.progress and info.is_main))
        timed = cfg.minutes > 0
        el, done, first = self._elapsed(), False, step
        batches = self._batches(step)
        module.train()
        while not done:
            batch = to_device(next(batches), dev, cfg.channels_last)
            if cfg.schedule == "cosine":
                f = lr_factor(step, warmup=cfg.warmup, total_steps=cfg.steps, floor=cfg.lr_floor,
                              progress=el / (cfg.minutes * 60.0) if timed else None)
            if cfg.schedule != "onecycle":
                lr = cfg.lr * f if cfg.schedule == "cosine" else cfg.lr
                for g in opt.param_groups:
                    g["lr"] = lr
            lr = opt.param_groups[0]["lr"]
            if not module.training:
                module.train()
            with self._autocast():
                terms = net(batch)
                loss = total_loss(terms)
            if cfg.check_finite and not torch.isfinite(loss):
                raise FloatingPointError(f"{cfg.desc}: loss is {float(loss)} at step {step}: lower the learning "
                                         f"rate (now {cfg.lr}) or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            ft = _float_terms(terms)
            ranks = self._sync([float(loss.detach()), *ft.values()])
            mean = np.mean(np.asarray(ranks), axis=0).tolist()
            rec = {"step": step, "loss": mean[0], "lr": lr, "t": round(self._elapsed(), 3),
                   **dict(zip(ft, mean[1:]))}
            if info.active:
                rec["rank_loss"] = [r[0] for r in ranks]
            res.history.append(rec)
            self._write(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            if timed:
                up, el = self._time_up()
                done = up
            if cfg.steps and step >= cfg.steps:
                done = True
            if cfg.eval_every and step % cfg.eval_every == 0 and not (done and self.out is not None):
                self.validate(step)
            if self.out is not None and (done or (cfg.ckpt_every and step % cfg.ckpt_every == 0)):
                self.checkpoint(step, opt, sched)
            elif done and (cfg.eval_every or self.out is None):
                if not (res.val and res.val[-1]["step"] == step):
                    self.validate(step)
        bar.close()
        res.steps = step
        res.seconds = time.perf_counter() - self._t0
        res.train_seconds = max(1e-9, res.seconds - self._pause)
        res.samples_per_s = (step - first) * cfg.batch_size / res.train_seconds
        if info.active:
            import torch.distributed as dist

            dist.barrier()
        module.eval()
        if cfg.channels_last:
            module.to(memory_format=torch.contiguous_format)
        module.to(orig)
        if self._logf is not None:
            self._write({"event": "summary", **res.summary()})
            self._logf.close()
            self._logf = None
            (self.out / "summary.json").write_text(json.dumps({**res.summary(), "config": cfg.to_dict()}, indent=1))
            plot_log(self.out / "log.jsonl", self.out / "loss.png")
        log.info("%s: %d steps, %.1f samples/s, best %s", cfg.desc, step, res.samples_per_s, res.best)
        return res


def plot_log(log_path: Path, png: Path) -> Path | None:
    """Training (per step) and held-out loss curves of a ``log.jsonl`` (matplotlib Agg)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no loss plot")
        return None
    tr, va = {}, {}
    for line in Path(log_path).read_text().splitlines():
        r = json.loads(line)
        if "event" not in r:
            tr[r["step"]] = r["loss"]
        elif r["event"] == "val" and "loss" in r:
            va[r["step"]] = r["loss"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    s = sorted(tr)
    ax.plot(s, [tr[k] for k in s], lw=0.8, label="train")
    if va:
        s = sorted(va)
        ax.plot(s, [va[k] for k in s], "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


__all__ = ["LossModule", "Trainer", "TrainResult", "total_loss", "plot_log"]
