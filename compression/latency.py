"""Interleaved latency of several model files on their deployment runtime (ORT / LiteRT).

docs/design.md §5-6: these machines are noisy (+-30 %), so candidates are compared inside one run,
interleaved (A B A B ...), with idle runtime threads not spinning, and reported as medians and
ratios. Used by ``edgepose compress`` and ``benchmarks/compression_frontier.py`` / ``latency_ratio.py``.

Each run is also timed in the calling thread's CPU time (``cpu_min``): at 1 thread the model runs
in that thread, so its CPU time is the run minus the time other processes held the core -- the
figure the roofline emulator scales (it barely moves under load, the wall-clock median does).
``between_rounds`` runs once before every round: ``edgepose compress`` re-measures the host peaks
there (:class:`~edgepose.bench.hostprobe.PeakSampler`), interleaved with the candidates.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class LatencyRow:
    """Latency of one model file in ms (medians and percentiles over the timed runs).

    ``cpu_min`` is the fastest run in the calling thread's CPU time: the model's own time at
    1 thread whatever else the machine runs (meaningless at more threads: workers do part of it).
    """

    name: str
    path: str
    p50: float
    p90: float
    mean: float
    runs: int
    samples: list[float] = field(default_factory=list, repr=False)
    cpu_min: float | None = None
    threads: int | None = None
    cpu_samples: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("samples")
        d.pop("cpu_samples")
        return d


def _runner(path: str, threads: int):
    if path.endswith(".tflite"):
        from edgepose.backends import open_backend

        b = open_backend(path, num_threads=threads)
        spec = b.inputs[0]
        x = np.zeros(spec.shape, spec.dtype)
        return lambda: b.run({spec.name: x}), b.close
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feeds = dummy_feeds(s.get_inputs())
    return lambda: s.run(None, feeds), lambda: None


def dummy_feeds(inputs) -> dict[str, np.ndarray]:
    """Timing inputs for every graph input (ORT ``NodeArg`` s): the image random, a state input (a DKD
    file's kernels) zero and a ``gate`` one (a tracked frame, the usual case)."""
    feeds = {}
    for k, i in enumerate(inputs):
        dtype = {"tensor(int32)": np.int32, "tensor(uint8)": np.uint8}.get(i.type, np.float32)
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        if k == 0:
            feeds[i.name] = np.random.default_rng(0).integers(0, 255, size=shape).astype(dtype)
        else:
            feeds[i.name] = (np.ones if "gate" in i.name else np.zeros)(shape, dtype)
    return feeds


def interleaved_latency(models: dict[str, str | os.PathLike], *, rounds: int = 15, per_round: int = 5,
                        warmup: int = 5, threads: int = 2, between_rounds=None) -> dict[str, LatencyRow]:
    """Time ``models`` (name -> file) interleaved: each round runs every model ``per_round`` times.

    Args:
        between_rounds: called with no argument before every round (e.g. a host-peak probe that
            must see the same load as the models).

    Returns:
        name -> :class:`LatencyRow` (ms).
    """
    runners = {n: _runner(os.fspath(p), threads) for n, p in models.items()}
    try:
        for fn, _ in runners.values():
            for _ in range(warmup):
                fn()
        samples: dict[str, list[float]] = {n: [] for n in models}
        cpu: dict[str, list[float]] = {n: [] for n in models}
        for r in range(rounds):
            if between_rounds is not None:
                between_rounds()
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for n in order:
                fn = runners[n][0]
                for _ in range(per_round):
                    c0, t0 = time.thread_time(), time.perf_counter()
                    fn()
                    samples[n].append((time.perf_counter() - t0) * 1e3)
                    cpu[n].append((time.thread_time() - c0) * 1e3)
    finally:
        for _, close in runners.values():
            close()
    out = {}
    for n, s in samples.items():
        a = np.asarray(s)
        out[n] = LatencyRow(n, os.fspath(models[n]), float(np.median(a)), float(np.percentile(a, 90)),
                            float(a.mean()), len(a), s,
                            float(min(cpu[n])) if threads == 1 else None, threads, cpu[n])
    return out


def runtime_settings(threads: int) -> dict:
    """The runtime settings ``edgepose compress`` times and scores candidates with, for the report
    (issue 20: accuracy is measured with the settings the deployment uses). Both are the shipped
    backends' settings: ``.onnx`` through onnxruntime's CPU provider with the default graph
    optimisations (:class:`edgepose.backends.ort.OrtBackend`), ``.tflite`` through the LiteRT
    interpreter with its default op resolver, which applies the XNNPACK delegate
    (:class:`edgepose.backends.litert.LiteRTBackend`)."""
    from edgepose.bench.hostprobe import package_versions, read_cpuinfo

    v = package_versions()
    model, flags, _ = read_cpuinfo()
    return {
        "onnx": {"runtime": "onnxruntime", "version": v.get("onnxruntime"), "providers": ["CPUExecutionProvider"],
                 "graph_optimization": "ORT_ENABLE_ALL (default)", "threads": threads},
        "tflite": {"runtime": "ai-edge-litert", "version": v.get("ai-edge-litert"),
                   "delegate": "XNNPACK (the interpreter's default op resolver, as shipped)", "threads": threads},
        "cpu_model": model, "isa_flags": list(flags),
    }
