"""Tune the One Euro baseline on the training clips (never an evaluation clip).

Criterion (issue 7): the lowest mean acceleration error against the teacher's track among the
settings whose mean position error is at most the unfiltered edge track's + 0.5 px. Both means
are pooled over the training clips, each clip weighted by its frame count. The reference is
the teacher's track where the teacher sees the joint (score >= ``MIN_TEACHER_SCORE``; e.g. the
legs below the frame of the ASL clips are left out) and where both models track the same
person (frames whose median joint distance exceeds ``SAME_PERSON_FRACTION`` x the person's
size are left out: a few frames of sports2d, mmaction2 and the like). The filter runs as
the estimator runs it: the speed divided by the ROI side of each frame (reconstructed from the
track, :func:`edgepose.video.tracks.roi_sides`), restarting where the pose is lost.

Two searches:

* ``COARSE_GRID`` (round numbers, ``d_cutoff`` 1 Hz): the SDK defaults in
  :class:`edgepose.video.one_euro.OneEuroConfig`.
* ``FINE_GRID`` (finer, ``d_cutoff`` searched too): ``CONSTRAINED_ONE_EURO`` of
  :mod:`edgepose.eval.temporal_report`, the "best One Euro under the position constraint" row.

The fixed-lag One Euro (:class:`edgepose.video.one_euro.FixedLagOneEuro`, the baseline at the
learned smoother's delay) is tuned by :func:`search_fixed_lag` with the same rule and clips
(docs/research-notes.md T5).

    python -m edgepose.compression.temporal.baselines [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepose.compression.temporal.data import TRAIN_VIDEOS, collect_pairs
from edgepose.eval.jitter import temporal_metrics
from edgepose.assets import assets_dir
from edgepose.video._temporal import person_scale
from edgepose.video.one_euro import OneEuroConfig
from edgepose.video.sources import video_size
from edgepose.video.tracks import one_euro_track, roi_sides

log = logging.getLogger(__name__)

#: Position error allowed above the unfiltered track (px), the issue's bound.
POSITION_MARGIN_PX = 0.5
#: vtest frames 0-599 (600+ is evaluation) are training material too, but left out by default:
#: the single-person tracks of the edge model and the teacher follow different pedestrians in
#: ~10 % of its frames (errors of 300-600 px), so the teacher is no reference there.
EXTRA_TRAIN_VIDEOS: tuple[tuple[str, int, int | None], ...] = (("data/opencv_doc/vtest.avi", 0, 600),)

MIN_TEACHER_SCORE = 0.3
SAME_PERSON_FRACTION = 0.25

COARSE_GRID = {"min_cutoff": (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0),
               "beta": (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0), "d_cutoff": (1.0,)}
FINE_GRID = {"min_cutoff": (0.3, 0.5, 0.7, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0),
             "beta": (0.0, 0.1, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0),
             "d_cutoff": (0.5, 1.0, 2.0)}


@dataclass
class TuneClip:
    """One training clip: the edge track, its scores, the reference (:func:`teacher_reference`),
    fps, and the ROI side of each frame."""

    name: str
    edge: np.ndarray
    scores: np.ndarray
    teacher: np.ndarray
    fps: float
    scales: np.ndarray


def teacher_reference(edge: np.ndarray, teacher, *, min_score: float = MIN_TEACHER_SCORE,
                      same_person: float = SAME_PERSON_FRACTION) -> np.ndarray:
    """The teacher's (T, 17, 2) track as a reference: nan where the teacher's keypoint score is
    below ``min_score`` and in frames where the edge track is on someone else (median joint
    distance > ``same_person`` x the teacher pose's bounding-box side)."""
    ref = teacher.keypoints.astype(np.float64).copy()
    ref[~(teacher.scores >= min_score)] = np.nan
    fin = np.isfinite(teacher.keypoints).all(axis=-1)
    with np.errstate(invalid="ignore"):
        dist = np.linalg.norm(edge - teacher.keypoints, axis=-1)
        side = np.array([person_scale(k[None]) for k in teacher.keypoints])
        med = np.array([np.median(d[f]) if f.any() else np.nan for d, f in zip(dist, fin)])
    ref[med > same_person * side] = np.nan
    return ref


def load_clips(cache_dir: str = "runs/temporal_tracks", *, assets=None,
               videos=TRAIN_VIDEOS) -> list[TuneClip]:
    root = assets_dir(assets, check=False)
    out = []
    for p, (rel, _, _) in zip(collect_pairs(cache_dir, assets=root, videos=videos), videos):
        e = p.edge.keypoints.astype(np.float64)
        out.append(TuneClip(p.name, e, p.edge.scores, teacher_reference(e, p.teacher), p.fps,
                            roi_sides(e, p.edge.scores, video_size(root / rel))))
    return out


def pooled(clips: list[TuneClip], tracks: list[np.ndarray]) -> tuple[float, float]:
    """(accel error, position error) of ``tracks`` vs the teachers, frame-weighted over clips."""
    acc, pos, w = [], [], []
    for c, t in zip(clips, tracks):
        m = temporal_metrics(t, c.teacher, c.fps)
        if np.isfinite(m.accel_error) and np.isfinite(m.position_error):
            acc.append(m.accel_error)
            pos.append(m.position_error)
            w.append(len(t))
    return float(np.average(acc, weights=w)), float(np.average(pos, weights=w))


def search(clips: list[TuneClip], grid: dict, margin: float = POSITION_MARGIN_PX):
    """Returns (best config, raw (acc, pos), table of (min_cutoff, beta, d_cutoff, acc, pos))."""
    raw = pooled(clips, [c.edge for c in clips])
    table = []
    for mc, beta, dc in itertools.product(grid["min_cutoff"], grid["beta"], grid["d_cutoff"]):
        cfg = OneEuroConfig(min_cutoff=mc, beta=beta, d_cutoff=dc)
        acc, pos = pooled(clips, [one_euro_track(c.edge, c.fps, cfg, c.scales) for c in clips])
        table.append((mc, beta, dc, acc, pos))
    ok = [r for r in table if r[4] <= raw[1] + margin]
    mc, beta, dc, acc, pos = min(ok, key=lambda r: r[3])
    log.info("raw acc %.3f pos %.3f; best under pos <= %.3f: %g Hz beta %g d %g -> acc %.3f pos %.3f",
             raw[0], raw[1], raw[1] + margin, mc, beta, dc, acc, pos)
    return OneEuroConfig(min_cutoff=mc, beta=beta, d_cutoff=dc), raw, table



def search_fixed_lag(clips: list[TuneClip], grid: dict, delays=(2,), methods=None,
                     margin: float = POSITION_MARGIN_PX):
    """The same search for the fixed-lag One Euro (:class:`edgepose.video.one_euro.FixedLagOneEuro`)
    at each delay of ``delays``, per method (default: every one of ``FIXED_LAG_METHODS``).

    The rule is :func:`search`'s: per (method, delay), the lowest pooled acceleration error among
    the settings whose pooled position error is at most the unfiltered track's + ``margin``.
    The baseline at a delay is then the method + setting with the lowest acceleration error of
    those per-method bests (:func:`pick_fixed_lag`).

    Returns:
        (raw (acc, pos), {(method, delay): (config, acc, pos) or None when no setting qualifies},
        table of (method, delay, min_cutoff, beta, d_cutoff, acc, pos)).
    """
    from edgepose.video.tracks import fixed_lag_from_forward
    from edgepose.video.one_euro import FIXED_LAG_METHODS

    methods = tuple(methods or FIXED_LAG_METHODS)
    raw = pooled(clips, [c.edge for c in clips])
    table = []
    for mc, beta, dc in itertools.product(grid["min_cutoff"], grid["beta"], grid["d_cutoff"]):
        cfg = OneEuroConfig(min_cutoff=mc, beta=beta, d_cutoff=dc)
        fwd = [one_euro_track(c.edge, c.fps, cfg, c.scales) for c in clips]  # shared by all
        for d in delays:
            for m in methods:
                acc, pos = pooled(clips, [fixed_lag_from_forward(c.edge, f, c.fps, cfg, d, c.scales, method=m)
                                          for c, f in zip(clips, fwd)])
                table.append((m, d, mc, beta, dc, acc, pos))
    best = {}
    for d in delays:
        for m in methods:
            ok = [r for r in table if r[0] == m and r[1] == d and r[6] <= raw[1] + margin]
            if not ok:
                best[(m, d)] = None
                continue
            r = min(ok, key=lambda r: r[5])
            best[(m, d)] = (OneEuroConfig(min_cutoff=r[2], beta=r[3], d_cutoff=r[4]), r[5], r[6])
            log.info("fixed-lag %s d=%d: best under pos <= %.3f: %g Hz beta %g d %g -> acc %.3f pos %.3f",
                     m, d, raw[1] + margin, r[2], r[3], r[4], r[5], r[6])
    return raw, best, table


def pick_fixed_lag(best: dict, delay: int):
    """The fixed-lag baseline at ``delay`` from :func:`search_fixed_lag`'s per-method bests: the
    (method, config, acc, pos) with the lowest training acceleration error (None: none qualifies)."""
    cands = [(m, *v) for (m, d), v in best.items() if d == delay and v is not None]
    return min(cands, key=lambda c: c[2]) if cands else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache-dir", default="runs/temporal_tracks")
    p.add_argument("--assets", default=None)
    p.add_argument("--json", default=None, help="write both searches' tables here")
    p.add_argument("--with-vtest", action="store_true", help="add vtest 0-599 (see EXTRA_TRAIN_VIDEOS)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    videos = TRAIN_VIDEOS + (EXTRA_TRAIN_VIDEOS if a.with_vtest else ())
    clips = load_clips(a.cache_dir, assets=a.assets, videos=videos)
    report = {"clips": [c.name for c in clips], "margin_px": POSITION_MARGIN_PX}
    sdk = cur = None
    for name, grid in (("coarse", COARSE_GRID), ("fine", FINE_GRID)):
        cfg, raw, table = search(clips, grid)
        report[name] = {"best": cfg.__dict__, "raw": {"accel_error": raw[0], "position_error": raw[1]},
                        "table": [dict(zip(("min_cutoff", "beta", "d_cutoff", "accel_error",
                                            "position_error"), r)) for r in table]}
        if name == "coarse":
            sdk = cfg
        else:
            cur = cfg
    for label, cfg in (("previous SDK default", OneEuroConfig(1.0, 20.0)),
                       ("previous 'tuned' baseline", OneEuroConfig(1.5, 0.0))):
        acc, pos = pooled(clips, [one_euro_track(c.edge, c.fps, cfg, c.scales) for c in clips])
        report[label] = {"config": cfg.__dict__, "accel_error": acc, "position_error": pos}
        log.info("%s %s: acc %.3f pos %.3f", label, cfg, acc, pos)
    log.info("SDK defaults (coarse grid): %s; constrained best (fine grid): %s", sdk, cur)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
