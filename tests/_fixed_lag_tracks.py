"""Synthetic keypoint tracks and an online runner shared by the fixed-lag smoother tests."""

import numpy as np


def noisy_track(n=80, seed=0, gaps=()):
    """(n, 17, 2) drifting, oscillating joints with 2 px noise (rows in ``gaps`` = no pose, nan)
    and per-frame ROI sides (n,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)[:, None, None]
    base = rng.uniform(100, 300, size=(1, 17, 2))
    clean = base + 2.5 * t * np.array([1.0, 0.3]) + 20.0 * np.sin(2 * np.pi * t / 40 + base / 50)
    x = clean + rng.normal(0, 2.0, size=clean.shape)
    x[list(gaps)] = np.nan
    return x, rng.uniform(120, 260, n)


def run_online(f, track, fps, scales):
    """Push a (N, 17, 2) track (nan rows = no pose) through the fixed-lag filter ``f`` and flush:
    (N, 17, 2) in input order; every input comes out exactly once."""
    outs = []
    for i, (k, s) in enumerate(zip(track, scales)):
        outs += f.push(k if np.isfinite(k).all() else None, i * 1000.0 / fps, scale=float(s))
    outs += f.flush()
    assert [o.index for o in outs] == list(range(len(track)))
    return np.stack([o.value if o.value is not None else np.full((17, 2), np.nan) for o in outs])
