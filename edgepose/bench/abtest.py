"""A/B mode: two cases timed run by run, interleaved, reported as per-pair ratios.

On a shared, noisy machine two cases compare fairly only inside one run, interleaved (docs/design.md
section 5). Both backends are opened once; onnxruntime sessions are opened with spinning
disabled so the idle one does not steal cycles from the one being timed (docs/design.md pitfalls).
Each pair runs A then B on even pairs and B then A on odd ones, so drift and ordering effects
cancel. The result is the ratio A/B per pair, its median and spread (IQR, min/max) and a 95 %
bootstrap interval of the median.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from edgepose.bench.suite import Case

log = logging.getLogger(__name__)


def ratio_summary(ratios, *, seed: int = 0, boot: int = 2000) -> dict:
    """Median, quartiles, min/max and a bootstrap 95 % interval of the median of ``ratios``."""
    r = np.asarray(ratios, dtype=np.float64)
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(r, size=(boot, r.size), replace=True), axis=1)
    return {"median": float(np.median(r)), "p25": float(np.percentile(r, 25)),
            "p75": float(np.percentile(r, 75)), "iqr": float(np.percentile(r, 75) - np.percentile(r, 25)),
            "min": float(r.min()), "max": float(r.max()),
            "ci95_median": [float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))],
            "n": int(r.size)}


def run_ab(ctx, a: Case, b: Case, *, pairs: int = 40) -> dict:
    """Time ``a`` and ``b`` interleaved for ``pairs`` pairs; see the module docstring."""
    from tqdm import tqdm

    from edgepose.bench.emulator import MEASURED
    from edgepose.bench.measure import _open, _sample_image, latency_stats, make_feeds

    if ctx.profile is not None:
        log.info("A/B ratios are measured on this host (not emulated): the ratio is what transfers")
    ta, tb = min(a.threads, ctx.host_cores), min(b.threads, ctx.host_cores)
    ba, bb = _open(a, ta, spin=False), _open(b, tb, spin=False)
    try:
        img = _sample_image(ctx)
        fa, fb = make_feeds(ba, image=img), make_feeds(bb, image=img)
        for _ in range(max(a.warmup, b.warmup, 3)):
            ba.run(fa)
            bb.run(fb)
        xa, xb = [], []
        for i in tqdm(range(pairs), desc=f"A/B {a.name} vs {b.name}", disable=not ctx.options.progress,
                      leave=False, unit="pair"):
            order = ((ba, fa, xa), (bb, fb, xb)) if i % 2 == 0 else ((bb, fb, xb), (ba, fa, xa))
            for backend, feeds, out in order:
                t0 = time.perf_counter()
                backend.run(feeds)
                out.append((time.perf_counter() - t0) * 1e3)
    finally:
        ba.close()
        bb.close()
    ratios = [x / y for x, y in zip(xa, xb)]
    return {"kind": MEASURED, "a": a.id, "b": b.id, "threads": [ta, tb], "pairs": pairs,
            "spinning": False, "order": "ABBA (alternating per pair)",
            "a_latency_ms": latency_stats(xa), "b_latency_ms": latency_stats(xb),
            "ratio_a_over_b": ratio_summary(ratios), "ratios": ratios,
            "a_samples_ms": xa, "b_samples_ms": xb}
