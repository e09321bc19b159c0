"""Tune the One Euro baseline on the same training tracks as the learned smoother.

A fair comparison gives the baseline the same data: grid-search ``min_cutoff`` and ``beta``
minimising position L1 + acceleration L1 against the teacher (in units of the person's size,
the learned smoother's loss) over the training clips, at zero delay.

    python -m edgepose.compression.temporal.baselines [ACCEL_WEIGHT]
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

from edgepose.compression.temporal.data import collect_pairs
from edgepose.eval.temporal_report import one_euro_track
from edgepose.video._temporal import person_scale
from edgepose.video.one_euro import OneEuroConfig

log = logging.getLogger(__name__)

MIN_CUTOFFS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)
BETAS = (0.0, 0.3, 1.0, 3.0, 10.0, 20.0, 50.0)


def objective(pred, tgt, scale, accel_weight: float = 1.0) -> float:
    """The learned smoother's loss: position L1 + accel_weight x acceleration L1 (person units)."""
    e = (pred - tgt) / scale
    acc = e[2:] - 2 * e[1:-1] + e[:-2]
    return float(np.abs(e).mean() + accel_weight * np.abs(acc).mean())


def tune(pairs, accel_weight: float = 1.0) -> tuple[OneEuroConfig, list]:
    """Grid search; returns the best config and the sorted (objective, min_cutoff, beta) table."""
    segs = []
    for p in pairs:
        ok = p.edge.present & p.teacher.present
        if ok.all() and len(ok) >= 16:
            segs.append((p.edge.keypoints.astype(np.float64), p.teacher.keypoints.astype(np.float64),
                         p.fps, person_scale(p.teacher.keypoints)))
    table = []
    for mc, beta in itertools.product(MIN_CUTOFFS, BETAS):
        cfg = OneEuroConfig(min_cutoff=mc, beta=beta)
        obj = np.mean([objective(one_euro_track(e, fps, cfg), t, s, accel_weight)
                       for e, t, fps, s in segs])
        table.append((obj, mc, beta))
    raw = np.mean([objective(e, t, s, accel_weight) for e, t, _, s in segs])
    table.sort()
    log.info("raw objective %.4f; best %s", raw, table[:5])
    _, mc, beta = table[0]
    return OneEuroConfig(min_cutoff=mc, beta=beta), table


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import sys

    w = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    cfg, _ = tune(collect_pairs(), w)
    log.info("tuned One Euro: %s", cfg)
