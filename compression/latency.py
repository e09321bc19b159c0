"""Interleaved latency of several model files on their deployment runtime (ORT / LiteRT).

docs/design.md §5-6: these machines are noisy (+-30 %), so candidates are compared inside one run,
interleaved (A B A B ...), with idle runtime threads not spinning, and reported as medians and
ratios. Used by ``edgepose compress`` and ``benchmarks/compression_frontier.py`` / ``latency_ratio.py``.
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
    """Latency of one model file in ms (medians and percentiles over the timed runs)."""

    name: str
    path: str
    p50: float
    p90: float
    mean: float
    runs: int
    samples: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("samples")
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
    i = s.get_inputs()[0]
    dtype = {"tensor(int32)": np.int32, "tensor(uint8)": np.uint8}.get(i.type, np.float32)
    x = np.random.default_rng(0).integers(0, 255, size=[d if isinstance(d, int) else 1 for d in i.shape]).astype(dtype)
    return lambda: s.run(None, {i.name: x}), lambda: None


def interleaved_latency(models: dict[str, str | os.PathLike], *, rounds: int = 15, per_round: int = 5,
                        warmup: int = 5, threads: int = 2) -> dict[str, LatencyRow]:
    """Time ``models`` (name -> file) interleaved: each round runs every model ``per_round`` times.

    Returns:
        name -> :class:`LatencyRow` (ms).
    """
    runners = {n: _runner(os.fspath(p), threads) for n, p in models.items()}
    try:
        for fn, _ in runners.values():
            for _ in range(warmup):
                fn()
        samples: dict[str, list[float]] = {n: [] for n in models}
        for r in range(rounds):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for n in order:
                fn = runners[n][0]
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    fn()
                    samples[n].append((time.perf_counter() - t0) * 1e3)
    finally:
        for _, close in runners.values():
            close()
    out = {}
    for n, s in samples.items():
        a = np.asarray(s)
        out[n] = LatencyRow(n, os.fspath(models[n]), float(np.median(a)), float(np.percentile(a, 90)),
                            float(a.mean()), len(a), s)
    return out
