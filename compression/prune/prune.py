"""``prune(model, cfg)``: structured channel pruning on Torch-Pruning's dependency graph.

Torch-Pruning (DepGraph) finds the groups of coupled channels (residual adds, concats, depthwise
convolutions) and removes them physically; this module chooses how many (a channel ratio, or the
ratio that reaches a MACs target, rounded to multiples of 8), which (an importance criterion from
:mod:`.importance`), keeps the heads' final convolutions intact, and checks every result with an
exactness guard: the pruned model must compute what the unpruned model computes once the removed
channels are zeroed. The plan (removed / kept channels per group) is JSON and re-applies to the
unpruned model (:func:`apply_plan`).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .importance import IMPORTANCES, accumulate_gradients, make_importance
from edgepose.errors import CompressionError, ConfigError

log = logging.getLogger(__name__)

PLAN_VERSION = 1


@dataclass(frozen=True)
class PruneConfig:
    """Pruning options.

    Attributes:
        importance: ``magnitude`` (no data), ``taylor`` or ``content`` (need labelled batches).
        ratio: fraction of channels removed from every prunable group (ignored with target_macs).
        target_macs: keep this fraction of the model's MACs instead (bisection over ``ratio``).
        round_to: kept channel counts are rounded up to multiples of this (8: SIMD width of
            int8/fp32 kernels); layers whose count is not a multiple keep their count.
        max_ratio: never remove more than this fraction of any group.
        sigma: content-aware disc radius in head-map cells (2 cells = 8 px at stride 4).
        guard_tol: largest allowed |pruned - zeroed unpruned| on any head output, relative to
            that output's largest magnitude (floored at 1): float summation order changes with
            the channel count, so regression heads of magnitude ~20 differ by ~1e-5 x 20.
        global_pruning: rank channels across all layers (normalised importance) instead of the
            same ratio per group, so insensitive layers give up more channels.
        ignore: module-name substrings never pruned (beyond the heads' final convolutions).
    """

    importance: str = "magnitude"
    ratio: float = 0.3
    target_macs: float | None = None
    round_to: int = 8
    max_ratio: float = 0.8
    sigma: float = 2.0
    guard_tol: float = 1e-4
    global_pruning: bool = False
    ignore: tuple[str, ...] = ()
    version: int = 1

    def __post_init__(self):
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"PruneConfig.importance={self.importance!r} is not one of "
                             f"{', '.join(IMPORTANCES)}")
        if not 0.0 <= self.ratio < 1.0:
            raise ConfigError(f"PruneConfig.ratio must be in [0, 1), got {self.ratio!r}")
        if self.target_macs is not None and not 0.05 <= self.target_macs <= 1.0:
            raise ConfigError(f"PruneConfig.target_macs is a fraction of the MACs in [0.05, 1], got "
                             f"{self.target_macs!r} (e.g. 0.5 keeps half)")
        if self.round_to < 1:
            raise ConfigError(f"PruneConfig.round_to must be >= 1, got {self.round_to!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ignore"] = list(self.ignore)
        return d


@dataclass
class PruneResult:
    """A pruned copy of the model and what was done.

    Attributes:
        model: the pruned model (the input model is left untouched).
        plan: the JSON-serialisable plan (see :func:`apply_plan`).
        macs / params: (before, after).
        ratio: the channel ratio used.
        guard_max_diff: exactness guard result (largest head-output difference).
    """

    model: torch.nn.Module
    plan: dict
    macs: tuple[int, int]
    params: tuple[int, int]
    ratio: float
    guard_max_diff: float
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"macs_before": self.macs[0], "macs_after": self.macs[1],
                "macs_fraction": self.macs[1] / self.macs[0], "params_before": self.params[0],
                "params_after": self.params[1], "ratio": self.ratio, "guard_max_diff": self.guard_max_diff}


def example_input(model) -> torch.Tensor:
    """A (1, 3, H, W) input for tracing ``model`` (uses ``model.input_size``)."""
    w, h = getattr(model, "input_size", (192, 192))
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))


def count(model, x=None) -> tuple[int, int]:
    """(MACs, params) of ``model`` on ``x`` (Torch-Pruning's counter)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, x if x is not None else example_input(model))
    return int(macs), int(params)


def _ignored(model, patterns=()) -> list[torch.nn.Module]:
    out = list(model.head_convs()) if hasattr(model, "head_convs") else []
    out += [m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and any(p in n for p in patterns)]
    return out


def _round_up_pruner():
    """MetaPruner whose kept channel counts round *up* to ``round_to``.

    Torch-Pruning rounds the kept count down, so a 16- or 24-channel layer asked to lose 5 %
    lost 8 channels (33-50 %); measured on MoveNet Lightning that one rule took the pruned
    model from ~1 px to ~40 px from the teacher. Rounding up never prunes more than asked.
    """
    import torch_pruning as tp

    class RoundUpPruner(tp.pruner.MetaPruner):
        def _round_to(self, n_pruned, current_channels, round_to):
            kept = current_channels - n_pruned
            kept = -(-kept // round_to) * round_to
            return max(current_channels - kept, 0)

    return RoundUpPruner


def _prune_copy(model, ratio: float, cfg: PruneConfig, batches, x) -> tuple[torch.nn.Module, dict, list]:
    net = copy.deepcopy(model).eval()
    if cfg.importance != "magnitude":
        accumulate_gradients(net, batches or [], cfg.importance, cfg.sigma)
    pruner = _round_up_pruner()(net, x, importance=make_importance(cfg.importance), pruning_ratio=ratio,
                                  max_pruning_ratio=cfg.max_ratio, round_to=cfg.round_to,
                                  ignored_layers=_ignored(net, cfg.ignore), global_pruning=cfg.global_pruning)
    names = {m: n for n, m in net.named_modules()}
    zero, groups = [], []
    for group in pruner.step(interactive=True):
        root = group[0]
        groups.append({"root": names[root.dep.target.module], "removed": sorted(int(i) for i in root.idxs)})
        for dep, idxs in group:
            mod = dep.target.module
            if pruner.DG.is_out_channel_pruning_fn(dep.handler) and mod in names:
                zero.append((names[mod], [int(i) for i in idxs]))
        group.prune()
    net.zero_grad(set_to_none=True)
    history = [[n, bool(o), [int(i) for i in idx]] for n, o, idx in pruner.DG.pruning_history()]
    return net, {"groups": groups, "history": history}, zero


def zero_channels(model, zero: list[tuple[str, list[int]]]) -> torch.nn.Module:
    """A copy of ``model`` whose listed output channels produce exactly zero."""
    z = copy.deepcopy(model)
    with torch.no_grad():
        for name, idxs in zero:
            m = z.get_submodule(name)
            for p in (getattr(m, "weight", None), getattr(m, "bias", None)):
                if p is not None:
                    p[idxs] = 0.0
    return z


def exactness_guard(pruned, original, zero, inputs, tol: float) -> float:
    """Largest relative head-output difference pruned vs (original with removed channels zeroed).

    Raises:
        RuntimeError: above ``tol``.
    """
    ref = zero_channels(original, zero).eval()
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            for a, b in zip(pruned(x), ref(x)):
                worst = max(worst, float((a - b).abs().max()) / max(1.0, float(b.abs().max())))
    if worst > tol:
        raise CompressionError(f"pruning exactness guard failed: pruned model differs from the zeroed "
                           f"unpruned model by {worst:.3g} (> guard_tol={tol}). A dependency was "
                           "missed; add the offending layer to ignored_layers")
    return worst


def prune(model: torch.nn.Module, cfg: PruneConfig = PruneConfig(), *, batches=None,
          guard_inputs=None) -> PruneResult:
    """Prune a copy of ``model``.

    Args:
        model: an imported model (``head_convs()`` gives the convolutions never pruned).
        cfg: options.
        batches: teacher-labelled batches (dicts: image, keypoints, maps) for taylor / content.
        guard_inputs: inputs for the exactness guard (default: one random input).

    Returns:
        :class:`PruneResult` with the pruned copy and its plan.
    """
    x = example_input(model)
    before = count(model, x)
    batches = list(batches) if batches is not None else None
    ratio = cfg.ratio
    if cfg.target_macs is not None:
        ratio = _ratio_for_macs(model, cfg, x, before[0])
    net, plan, zero = _prune_copy(model, ratio, cfg, batches, x)
    after = count(net, x)
    worst = exactness_guard(net, model, zero, guard_inputs or [x], cfg.guard_tol)
    plan.update(version=PLAN_VERSION, config=cfg.to_dict(), ratio=ratio,
                source_sha256=getattr(model, "source_sha256", ""),
                kept={n: int(m.out_channels) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)})
    log.info("pruned: MACs %.1fM -> %.1fM (%.0f%%), params %.2fM -> %.2fM, guard %.2g",
             before[0] / 1e6, after[0] / 1e6, 100 * after[0] / before[0], before[1] / 1e6, after[1] / 1e6, worst)
    return PruneResult(net, plan, (before[0], after[0]), (before[1], after[1]), ratio, worst)


def _ratio_for_macs(model, cfg: PruneConfig, x, macs0: int) -> float:
    """Bisection on the channel ratio (magnitude, counts only) for cfg.target_macs."""
    if cfg.global_pruning and cfg.importance != "magnitude":
        raise ConfigError("target_macs with global_pruning needs importance='magnitude' (the kept "
                         "counts then depend on the data); give ratio= instead")
    mag = PruneConfig(importance="magnitude", round_to=cfg.round_to, max_ratio=cfg.max_ratio,
                      global_pruning=cfg.global_pruning, ignore=cfg.ignore)
    lo, hi = 0.0, cfg.max_ratio
    best = None
    for _ in range(8):
        mid = (lo + hi) / 2
        net, _, _ = _prune_copy(model, mid, mag, None, x)
        frac = count(net, x)[0] / macs0
        if frac > cfg.target_macs:
            lo = mid
        else:
            hi, best = mid, mid
        if abs(frac - cfg.target_macs) < 0.01:
            return mid
    if best is None:
        reach = count(_prune_copy(model, cfg.max_ratio, mag, None, x)[0], x)[0] / macs0
        raise ConfigError(f"target_macs={cfg.target_macs} is out of reach: the smallest model at "
                         f"max_ratio={cfg.max_ratio} keeps {reach:.2f} of the MACs; raise max_ratio "
                         "or target_macs")
    return best


def save_plan(plan: dict, path: str | Path) -> Path:
    """Write the plan as JSON."""
    path = Path(path)
    path.write_text(json.dumps(plan, indent=1))
    return path


def load_plan(path: str | Path) -> dict:
    """Read a plan written by :func:`save_plan`."""
    plan = json.loads(Path(path).read_text())
    if plan.get("version") != PLAN_VERSION:
        raise ConfigError(f"pruning plan {str(path)!r} has version {plan.get('version')!r}; this "
                         f"edgepose reads version {PLAN_VERSION}: re-run the pruning")
    return plan


def apply_plan(model: torch.nn.Module, plan: dict) -> torch.nn.Module:
    """Re-apply a plan to (a copy of) the unpruned ``model``; returns the pruned copy."""
    import torch_pruning as tp

    src = getattr(model, "source_sha256", "")
    if plan.get("source_sha256") and src and plan["source_sha256"] != src:
        raise ConfigError(f"the plan was made for model sha256 {plan['source_sha256'][:12]}..., not "
                         f"{src[:12]}...; import the model the plan was made for")
    net = copy.deepcopy(model).eval()
    dg = tp.DependencyGraph().build_dependency(net, example_input(net))
    dg.load_pruning_history([tuple(h) for h in plan["history"]])
    return net
