"""Run a benchmark suite: time each case, emulate a target device, gate accuracy.

Per case: load (init) time, ``warmup`` untimed runs, ``runs`` timed runs of the backend alone
(the model as ``benchmark_model`` times it: no pre/post-processing), latency percentiles, peak
RSS, model size and sha256, MACs, achieved GFLOP/s and its fraction of this host's measured
peak, and accuracy on the evaluation set with its gate. With ``device=PROFILE`` every latency is
also emulated on that profile (:mod:`edgepose.bench.emulator`) and the row is labelled
``emulated``; the host figures stay in ``host_measured``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgepose.bench.emulator import EMULATED, MEASURED, OpSample, emulate
from edgepose.bench.measure import (PCTS, _open, _rss_mb, _sample_image, _sha, latency_stats,  # noqa: F401
                                    make_feeds, time_backend)
from edgepose.bench.suite import Case, Suite, expand
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA = "edgepose.bench/1"


@dataclass
class BenchOptions:
    """How to run a suite.

    Attributes:
        device: device profile name or YAML path to emulate; None or ``host`` = measure only.
        assets: root folder holding ``models/`` and ``data/`` (model paths and the evaluation
            data resolve against it); None = ``$EDGEPOSE_ASSETS``, else ``EDGEPOSE_MODEL_DIR``
            for models and ``EDGEPOSE_DATA`` for the evaluation data.
        host_profile: a saved host profile (``edgepose profile``) to take host peaks from;
            None = measure them at the start of the run (same load as the timed runs).
        accuracy: None = as each case says; False = skip every accuracy evaluation.
        runs: override every case's ``runs`` (None = the suite's).
        only: run only these case names.
        ab: two case names to run interleaved (A/B mode); None = the suite's ``ab`` if any.
        ab_pairs: A/B pairs to time.
        progress: show tqdm progress bars.
    """

    device: str | None = None  # measured only, unless asked
    assets: str | os.PathLike | None = None  # the env vars decide
    host_profile: str | os.PathLike | None = None  # fresh probe: the peaks match the run's load
    accuracy: bool | None = None  # the suite decides
    runs: int | None = None  # the suite decides
    only: list[str] | None = None  # every case
    ab: tuple[str, str] | None = None  # the suite decides
    ab_pairs: int = 40  # ratio spread settles by ~30 pairs on a noisy 2-core machine
    progress: bool = True  # interactive use; tests turn it off
    video: bool = True  # run the suite's video and peers entries (both are video cases)

    def __post_init__(self):
        if self.runs is not None and (not isinstance(self.runs, int) or self.runs < 1):
            raise ConfigError(f"BenchOptions.runs must be a positive int or None, got {self.runs!r}")
        if not isinstance(self.ab_pairs, int) or self.ab_pairs < 2:
            raise ConfigError(f"BenchOptions.ab_pairs must be an int >= 2, got {self.ab_pairs!r}")
        if self.ab is not None and len(self.ab) != 2:
            raise ConfigError(f"BenchOptions.ab must name two cases, got {self.ab!r}")


@dataclass
class Context:
    """What every case of one run shares."""

    options: BenchOptions
    host: object  # HostMeasurement or the measured dict of a host profile
    profile: object | None  # DeviceProfile being emulated, None when measuring
    versions: dict
    data_root: str | None
    stats_cache: dict = field(default_factory=dict)
    sha_cache: dict = field(default_factory=dict)
    accuracy_cache: dict = field(default_factory=dict)

    @property
    def host_cores(self) -> int:
        h = self.host if isinstance(self.host, dict) else self.host.to_dict()
        return int(h["usable_cores"])

    @property
    def kind(self) -> str:
        return EMULATED if self.profile is not None else MEASURED

    @property
    def profile_name(self) -> str:
        return self.profile.name if self.profile is not None else "host"


def _model_stats(ctx: Context, path: Path):
    from edgepose.bench.graphstats import model_stats

    key = str(path)
    if key not in ctx.stats_cache:
        ctx.stats_cache[key] = model_stats(path)
    return ctx.stats_cache[key]


#: Host threads of the run that feeds an emulation. One thread: on a shared machine a
#: single-thread time is far less disturbed by other processes than a multi-thread one, and
#: the target's thread scaling is modelled by its peaks (per-core peak x threads) and its
#: calibrated efficiency (fitted at the published thread count).
EMULATION_HOST_THREADS = 1


def _threads(ctx: Context, case: Case) -> tuple[int, int | None]:
    """(host threads to run, target threads) for a case. Emulating: the target runs the case's
    threads capped at the profile's cores, the host :data:`EMULATION_HOST_THREADS`."""
    if ctx.profile is None:
        return case.threads, None
    return EMULATION_HOST_THREADS, min(case.threads, ctx.profile.cpu.cores)


def emulate_case(ctx: Context, case: Case, stats, host_threads: int, target_threads: int,
                 measured_best: float):
    """The emulation of one case: per-op profile (onnxruntime, a separate profiled session) or
    layer stats (LiteRT, ``measured_best`` split by host roofline time). Only the resulting
    ``scale`` is applied to the timed runs."""
    from edgepose.profiles import host_peaks, target_peaks

    runtime = "ort" if case.backend == "ort" else "litert"
    if not isinstance(ctx.host, dict):  # a fresh probe (not a saved profile): refresh its peaks
        from edgepose.bench.hostprobe import refresh_single_thread_peaks

        refresh_single_thread_peaks(ctx.host, runtime)
    tprec = None
    if case.precision != "native" and case.precision != stats.precision:
        tprec = case.precision
    hp = host_peaks(ctx.host, host_threads, runtime)
    tp = target_peaks(ctx.profile, target_threads, runtime)
    if case.backend == "ort":
        from edgepose.bench._ortprof import profile_ort

        with _open(case, host_threads) as b:
            feeds = make_feeds(b)
        ops, _ = profile_ort(str(case.path), feeds, threads=host_threads, runs=max(10, min(case.runs, 30)))
        return emulate(ops, measured_best, hp, tp, target_precision=tprec)  # the profile only weights the ops
    ops = [OpSample.from_layer(lay) for lay in stats.layers]
    return emulate(ops, measured_best, hp, tp, target_precision=tprec)


def case_accuracy(ctx: Context, case: Case) -> dict:
    """PCK@0.2 x torso over ALL from ``edgepose.eval.runner.evaluate`` (cached per file)."""
    key = (str(case.path), case.card)
    if key not in ctx.accuracy_cache:
        from edgepose.eval.runner import evaluate
        from edgepose.models import load_model

        t0 = time.perf_counter()
        with load_model(str(case.path), card=case.card, num_threads=case.threads) as model:
            rep = evaluate(model, datasets=None, root=ctx.data_root, progress=False).to_dict()
        rows = {r.get("name") or r.get("dataset"): r for r in rep["rows"]}
        all_row = rows.get("ALL", {})
        ctx.accuracy_cache[key] = {
            "pck_torso": all_row.get("pck_torso"), "pck_bbox": all_row.get("pck_bbox"),
            "oks_ap": all_row.get("oks_ap"), "n_people": all_row.get("n_people"),
            "hard_pck_torso": rows.get("HARD", {}).get("pck_torso"), "units": "percent",
            "seconds": round(time.perf_counter() - t0, 2)}
    acc = dict(ctx.accuracy_cache[key])
    acc["gate"] = case.accuracy_gate
    pck = acc["pck_torso"]
    acc["status"] = ("FAILED" if case.accuracy_gate is not None and (pck is None or pck < case.accuracy_gate)
                     else "PASSED" if case.accuracy_gate is not None else "no gate")
    return acc


def run_case(ctx: Context, case: Case) -> dict:
    """Benchmark one case; returns its JSON row (see benchmarks/README.md)."""
    from edgepose.profiles import host_peaks

    stats = _model_stats(ctx, case.path)
    if ctx.profile is None and case.precision not in ("native", stats.precision):
        raise ConfigError(
            f"case {case.id!r}: {case.path.name} is {stats.precision}; precision {case.precision!r} "
            "can only be emulated (pass --device PROFILE) or run from a quantized file")
    host_threads, target_threads = _threads(ctx, case)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    backend = _open(case, host_threads)
    init_ms = (time.perf_counter() - t0) * 1e3
    try:
        feeds = make_feeds(backend, image=_sample_image(ctx))
        cpu = [] if ctx.profile is not None and host_threads == 1 else None  # issue 20: CPU time feeds the emulator
        samples, peak = time_backend(backend, feeds, warmup=case.warmup, runs=ctx.options.runs or case.runs,
                                     progress=ctx.options.progress, desc=case.id, cpu_samples=cpu)
        providers = getattr(backend, "active_providers", None)
    finally:
        backend.close()
    lat = latency_stats(samples)
    runtime = "ort" if case.backend == "ort" else "litert"
    hp = host_peaks(ctx.host, host_threads, runtime)
    peak_g = hp.peak(stats.precision)
    achieved = 2.0 * stats.macs / (lat["p50"] / 1e3) / 1e9
    row = {
        "id": case.id, "name": case.name, "model": case.model, "model_path": str(case.path),
        "model_sha256": _sha(ctx, case.path), "model_size_bytes": case.path.stat().st_size,
        "card": case.card, "backend": case.backend, "providers": providers,
        "threads": case.threads, "host_threads": host_threads, "target_threads": target_threads,
        "precision": stats.precision if case.precision == "native" else case.precision,
        "model_precision": stats.precision, "profile": ctx.profile_name, "kind": ctx.kind,
        "warmup": case.warmup, "runs": len(samples), "init_ms": init_ms,
        "latency_ms": lat, "samples_ms": samples,
        "peak_rss_mb": peak, "rss_delta_mb": peak - rss0,
        "macs": stats.macs, "model_bytes_moved": stats.bytes,
        "gflops_achieved": achieved, "host_peak_gflops": peak_g, "fraction_of_host_peak": achieved / peak_g,
        "emulation": None, "host_measured": None, "reference": None, "accuracy": None,
        "versions": ctx.versions, "status": "ok",
    }
    if ctx.profile is not None:
        base = latency_stats(cpu) if cpu else lat  # 1 thread: the runs' CPU time, which load barely moves
        emu = emulate_case(ctx, case, stats, host_threads, target_threads, base["min"])
        row["host_measured"] = {"kind": MEASURED, "threads": host_threads, "latency_ms": lat,
                                "cpu_ms": base if cpu else None, "init_ms": init_ms}
        row["latency_ms"] = {k: (v * emu.scale if k != "n" else v) for k, v in base.items()}
        row["samples_ms"] = [s * emu.scale for s in (cpu or samples)]
        row["emulation"] = emu.to_dict()
        row["gflops_achieved_target"] = 2.0 * stats.macs / (row["latency_ms"]["p50"] / 1e3) / 1e9
    ref = case.reference.get(ctx.profile_name)
    if ref:
        row["reference"] = {**ref, "ratio": row["latency_ms"]["p50"] / float(ref["ms"])}
        if row["emulation"]:  # the least-disturbed estimate: the best host run, scaled
            row["reference"]["ratio_best"] = row["emulation"]["emulated_ms"] / float(ref["ms"])
    want_acc = case.accuracy if ctx.options.accuracy is None else (ctx.options.accuracy and case.accuracy)
    if want_acc:
        row["accuracy"] = case_accuracy(ctx, case)
        if row["accuracy"]["status"] == "FAILED":
            row["status"] = "FAILED"
    return row


def make_context(options: BenchOptions) -> Context:
    """Measure (or load) this host's peaks and load the device profile to emulate."""
    from edgepose.bench.hostprobe import ProbeOptions, package_versions, probe_host
    from edgepose.profiles import load_profile

    profile = None
    if options.device not in (None, "host"):
        profile = load_profile(options.device)
        if profile.is_measured:
            log.info("profile %s is a measured host profile; its peaks are used as the target", profile.name)
    if options.host_profile:
        hp = load_profile(options.host_profile)
        if not hp.is_measured:
            raise ConfigError(f"--host-profile {options.host_profile!r} is not a measured host profile "
                              "(source: measured); write one with 'edgepose profile'")
        host = hp.measured
    else:
        host = probe_host(ProbeOptions(single_thread_gemm=False))
    data_root = str(Path(options.assets) / "data") if options.assets else None
    return Context(options, host, profile, package_versions(), data_root)


def run_suite(suite: Suite, options: BenchOptions | None = None) -> dict:
    """Run every case (then the A/B pair, the video and the peers entries); returns the result document."""
    from edgepose.bench.abtest import run_ab
    from edgepose.bench.peer_cases import check_peers, run_peer_entry
    from edgepose.bench.video_case import run_video

    options = options or BenchOptions()
    if options.assets is None and os.environ.get("EDGEPOSE_ASSETS"):
        options = dataclasses.replace(options, assets=os.environ["EDGEPOSE_ASSETS"])
    cases = expand(suite, assets=options.assets, only=options.only)  # missing models raise here
    peer_runs = check_peers(suite, options) if options.video else []  # a missing peer env too
    ctx = make_context(options)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    rows = []
    for case in cases:
        log.info("case %s", case.id)
        rows.append(run_case(ctx, case))
    ab_names = options.ab or (tuple(suite.ab) if suite.ab else None)
    ab = None
    if ab_names:
        by_name = {}
        for c in expand(suite, assets=options.assets):
            by_name.setdefault(c.name, c)
            by_name.setdefault(c.id, c)
        missing = [n for n in ab_names if n not in by_name]
        if missing:
            from edgepose.errors import unknown_name

            raise unknown_name("A/B case", missing[0], by_name)
        ab = run_ab(ctx, by_name[ab_names[0]], by_name[ab_names[1]], pairs=options.ab_pairs)
    video = [run_video(ctx, v, suite) for v in suite.video] if options.video else []
    peers = [run_peer_entry(ctx, r) for r in peer_runs]
    h = ctx.host if isinstance(ctx.host, dict) else ctx.host.to_dict()
    return {
        "schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "suite": {"name": suite.name, "description": suite.description, "path": str(suite.path)},
        "profile": {"name": ctx.profile_name, "kind": ctx.kind,
                    "description": ctx.profile.description if ctx.profile is not None else "this machine"},
        "machine": {"hostname": platform.node(), "host": h, "load_avg_1m_start": load0,
                    "load_avg_1m_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                    "seconds": round(time.perf_counter() - t0, 1)},
        "versions": ctx.versions, "cases": rows, "ab": ab, "video": video, "peers": peers,
        "failed": [r["id"] for r in rows if r["status"] == "FAILED"],
    }
