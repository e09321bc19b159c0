"""Timing primitives shared by the suite runner, the A/B mode and the video cases.

Kept apart from :mod:`edgepose.bench.runner` so :mod:`~edgepose.bench.abtest` and
:mod:`~edgepose.bench.video_case` need not import the runner that imports them (no cycle).
``ctx`` arguments are the runner's ``Context`` (``sha_cache``, ``options``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

#: The latency percentiles every report carries.
PCTS = (50, 90, 99)


def latency_stats(samples_ms) -> dict:
    """p50/p90/p99/mean/std/min/max of a list of ms (numpy 'linear' percentiles)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    out = {f"p{p}": float(np.percentile(a, p)) for p in PCTS}
    out.update(mean=float(a.mean()), std=float(a.std(ddof=1)) if a.size > 1 else 0.0,
               min=float(a.min()), max=float(a.max()), n=int(a.size))
    return out


def make_feeds(backend, *, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Inputs for ``backend``: a real photo resized to each NHWC image input when given, else a
    seeded pattern; values in the range the dtype implies (uint8/int32 0-255, int8 -128..127,
    float [0, 1])."""
    import cv2

    rng = np.random.default_rng(0)
    feeds = {}
    for spec in backend.inputs:
        shape = tuple(1 if d is None else int(d) for d in spec.shape)
        if image is not None and len(shape) == 4 and shape[3] == 3:
            px = cv2.resize(image, (shape[2], shape[1]), interpolation=cv2.INTER_AREA)[None].astype(np.float32)
        else:
            px = rng.integers(0, 256, shape).astype(np.float32)
        dt = np.dtype(spec.dtype)
        if dt.kind == "f":
            val = px / 255.0
        elif dt == np.int8:
            val = px - 128.0
        else:
            val = px
        feeds[spec.name] = np.ascontiguousarray(val.reshape(shape).astype(dt))
    return feeds


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # the bench extra is missing: RSS left out, never guessed
        return float("nan")


def _open(case, threads: int, *, spin: bool = True):
    from edgepose.backends import open_backend

    kw = {"spin": spin} if case.backend == "ort" else {}
    return open_backend(case.path, backend=case.backend, num_threads=threads, **kw)


def time_backend(backend, feeds, *, warmup: int, runs: int, progress: bool = False, desc: str = "",
                 cpu_samples: list | None = None):
    """Warm up, then time ``runs`` calls; returns (samples_ms, peak_rss_mb). With a ``cpu_samples``
    list, each call's CPU time in the calling thread (ms) is appended to it: at 1 thread the run's
    time without the time other processes held the core (what an emulation should scale)."""
    from tqdm import tqdm

    for _ in range(warmup):
        backend.run(feeds)
    samples, peak = [], _rss_mb()
    for _ in tqdm(range(runs), desc=desc, disable=not progress, leave=False, unit="run"):
        c0, t0 = time.thread_time(), time.perf_counter()
        backend.run(feeds)
        samples.append((time.perf_counter() - t0) * 1e3)
        if cpu_samples is not None:
            cpu_samples.append((time.thread_time() - c0) * 1e3)
        peak = max(peak, _rss_mb())
    return samples, peak


def _sha(ctx, path: Path) -> str:
    from edgepose.models import sha256_file

    if str(path) not in ctx.sha_cache:
        ctx.sha_cache[str(path)] = sha256_file(path)
    return ctx.sha_cache[str(path)]


_IMAGE: dict = {}


def _sample_image(ctx) -> np.ndarray | None:
    """The tfjs single-person test photo from the assets, when present (inputs then look real)."""
    if "img" not in _IMAGE:
        _IMAGE["img"] = None
        root = ctx.options.assets or os.environ.get("EDGEPOSE_ASSETS")
        if root:
            p = Path(root) / "data" / "tfjs_testdata" / "pose.jpg"
            if p.is_file():
                import cv2

                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                _IMAGE["img"] = None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return _IMAGE["img"]


def cpu_best_ms(fn, *, rounds: int = 5, per_round: int = 3, warmup: int = 2, between_rounds=None) -> float:
    """Fastest call of ``fn`` in the calling thread's CPU time, in ms, over ``rounds x per_round``
    calls; ``between_rounds()`` runs before every round (a host-peak probe that must see the same
    load). Meaningful only for work that runs in the calling thread (1-thread inference): then it
    is the call's time minus the time other processes held the core (docs/research-notes.md, E1)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(rounds):
        if between_rounds is not None:
            between_rounds()
        for _ in range(per_round):
            c0 = time.thread_time()
            fn()
            best = min(best, time.thread_time() - c0)
    return best * 1e3
