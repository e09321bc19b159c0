"""Budget search: the least pruning whose *measured* (or emulated) latency fits a device's budget.

``edgepose compress --device D`` gives a latency budget (the profile's frame budget, ``1000 /
target_fps`` ms, times ``budget_fraction``: the share of a frame the pose network may use). The
search prunes a copy of the model at each candidate channel ratio, exports each candidate to
ONNX, and times all of them **interleaved in one run** on ONNX Runtime (DESIGN.md: latency is
measured, not assumed; MACs are reported beside). For a device other than this host, every
candidate's host time is scaled by the roofline emulator (:mod:`edgepose.bench.emulator`, the
same model ``edgepose bench --device`` uses), and the figures are labelled ``emulated``.

Accuracy falls monotonically with the pruning ratio before distillation, so the candidate with
the best accuracy inside the budget is the *least* pruned one that fits; that is the one chosen.
If even the most pruned candidate misses the budget, :class:`BudgetError` says so and names the
best reachable latency (and with which ratio) so the user can relax the budget or the device.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

#: Candidate channel ratios (fraction of channels removed per group), least pruned first.
DEFAULT_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


class BudgetError(ConfigError):
    """No candidate meets the latency budget; ``best_ms`` / ``best_ratio`` say what is reachable."""

    def __init__(self, msg: str, *, budget_ms: float, best_ms: float, best_ratio: float, result=None):
        super().__init__(msg)
        self.budget_ms, self.best_ms, self.best_ratio = budget_ms, best_ms, best_ratio
        self.result = result  # the BudgetResult with every timed candidate (chosen = None)


@dataclass(frozen=True)
class BudgetConfig:
    """Options of :func:`search_budget`.

    Attributes:
        budget_ms: explicit latency budget; None = the profile's frame budget x budget_fraction.
        budget_fraction: share of the frame budget the pose network may use (the rest is
            capture, pre/post-processing, the app).
        ratios: candidate channel ratios, ascending.
        threads: inference threads on the target (capped at its cores when emulating).
        rounds / per_round: interleaved timing (see :func:`~edgepose.compression.latency.interleaved_latency`).
        importance: channel criterion for the candidates (latency depends on the kept counts,
            not on which channels are kept, so ``magnitude`` needs no data).
    """

    budget_ms: float | None = None
    budget_fraction: float = 1.0
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    threads: int = 2
    rounds: int = 10
    per_round: int = 5
    importance: str = "magnitude"

    def __post_init__(self):
        if self.budget_ms is not None and self.budget_ms <= 0:
            raise ConfigError(f"BudgetConfig.budget_ms must be > 0 ms, got {self.budget_ms!r}")
        if not 0.0 < self.budget_fraction <= 1.0:
            raise ConfigError(f"BudgetConfig.budget_fraction must be in (0, 1], got {self.budget_fraction!r}")
        if not self.ratios or any(not 0.0 <= r < 1.0 for r in self.ratios) or list(self.ratios) != sorted(self.ratios):
            raise ConfigError(f"BudgetConfig.ratios must be ascending values in [0, 1), got {self.ratios!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        return d


@dataclass
class BudgetCandidate:
    """One timed candidate (ms are the target's: measured here or emulated)."""

    ratio: float
    macs: int
    macs_fraction: float
    host_ms: float
    latency_ms: float
    kind: str
    fits: bool
    scale: float = 1.0
    cpu_model: str = ""  # the host the latency was timed on (issue 20: every latency row says so)
    isa_flags: list[str] = field(default_factory=list)


@dataclass
class BudgetResult:
    """Outcome of :func:`search_budget`.

    Attributes:
        budget_ms: the budget.
        device: profile name (``host`` = this machine).
        kind: ``measured`` (this host) or ``emulated`` (roofline-scaled from this host).
        candidates: every candidate, least pruned first.
        chosen: the chosen candidate (least pruned that fits).
    """

    budget_ms: float
    device: str
    kind: str
    candidates: list[BudgetCandidate] = field(default_factory=list)
    chosen: BudgetCandidate | None = None
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        how = ("host ms: wall-clock medians at 1 thread; target ms: emulated from each candidate's fastest "
               "1-thread run in CPU time" if self.kind == "emulated" else "interleaved medians")
        lines = [f"Budget search for `{self.device}`: budget {self.budget_ms:.1f} ms ({self.kind}, "
                 f"ONNX Runtime, {self.config.get('threads')} threads; {how}).", "",
                 f"Host: {self.candidates[0].cpu_model if self.candidates else '?'} (ISA flags: "
                 f"{', '.join(self.candidates[0].isa_flags) if self.candidates else ''}).", "",
                 "| ratio | MACs | host ms | target ms | fits |", "|---:|---:|---:|---:|:---:|"]
        for c in self.candidates:
            mark = "chosen" if self.chosen is c else ("yes" if c.fits else "no")
            lines.append(f"| {c.ratio:.2f} | {100 * c.macs_fraction:.0f} % | {c.host_ms:.2f} | "
                         f"{c.latency_ms:.2f} | {mark} |")
        return "\n".join(lines) + "\n"


def _export_candidate(model, path: str) -> str:
    """ONNX of a candidate: the MoveNet exporter for imported MoveNets, plain torch export otherwise."""
    import torch

    if hasattr(model, "decode") and hasattr(model, "scale"):
        from .export import ExportConfig, export_onnx

        return export_onnx(model, path, ExportConfig(check_inputs=1)).path
    from .prune.prune import example_input

    torch.onnx.export(model.eval(), (example_input(model),), path, dynamo=True, opset_version=18, verbose=False)
    return path


def _host_measurement(host):
    from edgepose.profiles import load_profile

    if host is None:
        from edgepose.bench.hostprobe import ProbeOptions, probe_host

        return probe_host(ProbeOptions(single_thread_gemm=False))
    if isinstance(host, (str, os.PathLike)):
        prof = load_profile(host)
        if not prof.is_measured:
            raise ConfigError(f"host profile {str(host)!r} is not a measured profile (source: measured); "
                              "write one with 'edgepose profile'")
        return prof.measured
    return host


def _llc(hm) -> int | None:
    return hm.get("llc_bytes") if isinstance(hm, dict) else hm.llc_bytes


def measure_candidates(paths: dict[str, str], profile=None, *, threads: int = 2, rounds: int = 10,
                       per_round: int = 5, host=None) -> tuple[dict[str, tuple[float, float, float]], str]:
    """Time ONNX files interleaved; with a (published) profile scale each by the roofline emulator.

    Emulating, the host runs 1 thread (as ``edgepose bench``) and the figure is robust to load
    on this machine (docs/research-notes.md, E1): the 1-thread host peaks are re-measured in CPU
    time between the timing rounds (:class:`~edgepose.bench.hostprobe.PeakSampler`; ``host``
    gives the cache size and the rest), and each candidate's fastest run in CPU time
    (``cpu_min``) is what the emulator scales, weighted over the ops by an onnxruntime profile.

    Returns:
        ``({name: (host_ms, target_ms, scale)}, kind)`` with kind ``measured`` or ``emulated``;
        ``host_ms`` is the wall-clock median on this host, ``scale`` the emulator's ratio of
        ``target_ms`` to the fastest CPU-time run.
    """
    from .latency import interleaved_latency

    emulate_it = profile is not None and not profile.is_measured
    host_threads = 1 if emulate_it else threads  # as edgepose bench: 1 host thread feeds an emulation
    sampler = hm = None
    if emulate_it:
        from edgepose.bench.hostprobe import PeakSampler

        hm = _host_measurement(host)
        sampler = PeakSampler("ort", llc=_llc(hm))
    lat = interleaved_latency(paths, rounds=rounds, per_round=per_round, threads=host_threads,
                              between_rounds=sampler.sample if sampler else None)
    if not emulate_it:
        return {n: (r.p50, r.p50, 1.0) for n, r in lat.items()}, "measured"
    import onnxruntime as ort

    from edgepose.bench._ortprof import profile_ort
    from edgepose.bench.emulator import emulate
    from edgepose.profiles import host_peaks, target_peaks

    from .latency import dummy_feeds

    hp = host_peaks(sampler.apply(hm), host_threads, "ort")
    tp = target_peaks(profile, min(threads, profile.cpu.cores), "ort")
    out = {}
    for n, p in paths.items():  # every graph input (a DKD file has three)
        feeds = dummy_feeds(ort.InferenceSession(p, providers=["CPUExecutionProvider"]).get_inputs())
        ops, _ = profile_ort(p, feeds, threads=host_threads, runs=10)
        em = emulate(ops, lat[n].cpu_min, hp, tp)
        log.info("%s: %.1f ms emulated on %s (fastest 1-thread run %.2f ms CPU time x %.2f; host peaks %s)",
                 n, em.emulated_ms, profile.name, lat[n].cpu_min, em.scale,
                 {k: round(v, 1) for k, v in sampler.values().items()})
        out[n] = (lat[n].p50, em.emulated_ms, em.scale)
    return out, "emulated"


def search_budget(model, *, profile=None, cfg: BudgetConfig = BudgetConfig(), host=None,
                  workdir: str | os.PathLike | None = None, measure=None, export=None) -> BudgetResult:
    """Find the least-pruned candidate of ``model`` whose latency fits the budget.

    Args:
        model: the imported model (``head_convs()``, ``input_size``).
        profile: a :class:`~edgepose.profiles.DeviceProfile` (or a name / path for ``load_profile``);
            None = this host, then ``cfg.budget_ms`` is required.
        cfg: options.
        host: this host's measurement (a measured profile name / path or a ``HostMeasurement``);
            None = probe it when emulating (~4 s).
        workdir: where candidate ONNX files go (default: a temporary folder, removed after).
        measure: replaces :func:`measure_candidates` (``paths -> ({name: (host, target, scale)}, kind)``).
        export: replaces the candidate exporter (``(model, path) -> path``).

    Raises:
        ConfigError: no budget (neither profile nor ``cfg.budget_ms``).
        BudgetError: no candidate fits; the message names the best reachable latency.
    """
    from .prune import PruneConfig, prune

    if isinstance(profile, (str, os.PathLike)):
        from edgepose.profiles import load_profile

        profile = load_profile(profile)
    if cfg.budget_ms is not None:
        budget = float(cfg.budget_ms)
    elif profile is not None:
        budget = profile.frame_budget.frame_ms * cfg.budget_fraction
    else:
        raise ConfigError("budget search needs a latency budget: pass a device profile (--device NAME) "
                          "or an explicit budget in ms (--budget-ms)")
    device = profile.name if profile is not None else "host"
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="edgepose-budget-")
        workdir = tmp.name
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        paths, macs = {}, {}
        for r in cfg.ratios:
            name = f"ratio_{r:.2f}"
            res = prune(model, PruneConfig(importance=cfg.importance, ratio=r))
            macs[name] = (r, res.macs[1], res.macs[1] / res.macs[0])
            paths[name] = (export or _export_candidate)(res.model, os.fspath(workdir / f"{name}.onnx"))
        times, kind = (measure or (lambda p: measure_candidates(
            p, profile, threads=cfg.threads, rounds=cfg.rounds, per_round=cfg.per_round, host=host)))(paths)
    finally:
        if tmp is not None:
            tmp.cleanup()
    from edgepose.bench.hostprobe import read_cpuinfo

    cpu_model, flags, _ = read_cpuinfo()
    result = BudgetResult(budget, device, kind, config=cfg.to_dict())
    for name in paths:
        r, m, frac = macs[name]
        h, t, s = times[name]
        result.candidates.append(BudgetCandidate(r, m, frac, h, t, kind, t <= budget, s, cpu_model, list(flags)))
    fits = [c for c in result.candidates if c.fits]
    if not fits:
        best = min(result.candidates, key=lambda c: c.latency_ms)
        raise BudgetError(
            f"the latency budget of {budget:.3g} ms on {device} cannot be met: the best reachable latency is "
            f"{best.latency_ms:.1f} ms ({kind}, channel ratio {best.ratio:.2f}, {100 * best.macs_fraction:.0f} % "
            f"of the MACs; candidates tried: {', '.join(f'{c.ratio:.2f}' for c in result.candidates)}). "
            "Raise the budget (a lower target_fps or budget fraction), allow larger ratios, or pick a faster device",
            budget_ms=budget, best_ms=best.latency_ms, best_ratio=best.ratio, result=result)
    result.chosen = fits[0]
    log.info("budget %.1f ms on %s: ratio %.2f (%.1f ms %s, %.0f %% MACs)", budget, device, fits[0].ratio,
             fits[0].latency_ms, kind, 100 * fits[0].macs_fraction)
    return result


__all__ = ["BudgetCandidate", "BudgetConfig", "BudgetError", "BudgetResult", "DEFAULT_RATIOS",
           "measure_candidates", "search_budget"]
