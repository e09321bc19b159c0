"""The evidence the adaptation gate asks for before a candidate replaces the deployed model.

A point comparison on a short gate segment is noise: on pose2sim_multi_cam01 (17 gate crops) the
candidate read 5.8 vs 20.3 disagreement on the gate and 21.7 vs 14.9 on the later evaluation
frames. :func:`decide` therefore accepts a candidate only when

1. the gate segment holds at least ``min_crops`` teacher-labelled crops (enough evidence), and
2. its disagreement with the teacher is no higher than the current model's (+ ``margin``) and,
   with no margin, lower: a tie is no measured gain, and a swap without one only risks a
   regression (sam2_juggle, scene_adapt round 3: +0.00 on 37 gate crops, then 1.70 -> 2.48 on the
   evaluation frames), and
3. a **paired cluster bootstrap** over the gate's frames (the crops of one frame are resampled
   together: people in one frame are not independent evidence) finds the candidate worse than
   the current model (+ ``margin``) in at most ``max_risk`` of the resamples.

All of it reads the gate segment only: frames of the user's footage after every training frame,
never an evaluation frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict and the evidence behind it.

    Attributes:
        accepted: the verdict.
        reason: one line saying why.
        diff: candidate minus current disagreement (points; negative = the candidate agrees better).
        p_worse: share of bootstrap resamples where the candidate is worse than current + margin.
        ci90: 5th and 95th percentile of ``diff`` over the resamples.
        crops / frames: gate evidence scored.
    """

    accepted: bool
    reason: str
    diff: float
    p_worse: float
    ci90: tuple[float, float]
    crops: int
    frames: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci90"] = [round(float(v), 3) for v in self.ci90]
        d.update(diff=round(float(self.diff), 3), p_worse=round(float(self.p_worse), 4))
        return d


def per_crop_hits(pred: np.ndarray, teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per crop: joints within 0.2 x torso of the teacher, and teacher-labelled joints scored
    (the same rule as :func:`~.scoring.agreement_of`, pooled over crops it gives the same PCK)."""
    from edgepose.eval.metrics import TORSO_ALPHA, torso_size
    from edgepose.types import SHARED13

    from .scoring import teacher_reference

    if not len(pred):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    gt = teacher_reference(teacher)
    p = np.stack([pred[..., 1], pred[..., 0]], axis=-1).astype(np.float64)
    norm = torso_size(gt)
    j = list(SHARED13)
    valid = np.isfinite(norm) & (norm > 0)
    labelled = (gt[:, j, 2] > 0) & valid[:, None]
    err = np.linalg.norm(p[:, j] - gt[:, j, :2], axis=-1)
    hits = labelled & (err < TORSO_ALPHA * np.where(valid, norm, 0.0)[:, None])
    return hits.sum(axis=1), labelled.sum(axis=1)


def frame_groups(sources: list[str]) -> np.ndarray:
    """Cluster ids for the bootstrap: crops of one ``file#frame`` share one id."""
    _, ids = np.unique(np.asarray(list(sources), dtype=str), return_inverse=True)
    return ids.reshape(-1)


def paired_bootstrap(hits_cand: np.ndarray, hits_cur: np.ndarray, joints: np.ndarray, groups: np.ndarray, *,
                     margin: float = 0.0, resamples: int = 2000, seed: int = 0) -> tuple[np.ndarray, float]:
    """``(diffs, p_worse)``: candidate minus current disagreement (points) per resample of the
    frames, and the share of resamples where it exceeds ``margin``."""
    g = np.asarray(groups)
    n = int(g.max()) + 1 if len(g) else 0
    if n == 0:
        return np.zeros(0), 1.0
    dh = np.bincount(g, weights=np.asarray(hits_cur, np.float64) - np.asarray(hits_cand, np.float64), minlength=n)
    nj = np.bincount(g, weights=np.asarray(joints, np.float64), minlength=n)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # (B, frames)
    tot = counts @ nj
    diffs = np.where(tot > 0, 100.0 * (counts @ dh) / np.maximum(tot, 1.0), 0.0)
    return diffs, float(np.mean(diffs > margin + 1e-9))


def decide(pred_cand: np.ndarray, pred_cur: np.ndarray, teacher: np.ndarray, sources: list[str], *,
           margin: float = 0.0, min_crops: int = 30, max_risk: float = 0.25, resamples: int = 2000,
           seed: int = 0) -> GateDecision:
    """The gate (module docstring) on the gate segment's predictions of both models."""
    hc, nj = per_crop_hits(pred_cand, teacher)
    hr, _ = per_crop_hits(pred_cur, teacher)
    groups = frame_groups(sources) if len(sources) else np.zeros(0, np.int64)
    frames = int(groups.max()) + 1 if len(groups) else 0
    crops = int((nj > 0).sum())
    if nj.sum() == 0:
        return GateDecision(False, "no teacher-labelled joint in the gate segment", float("nan"), 1.0,
                            (float("nan"), float("nan")), crops, frames)
    diff = 100.0 * float(hr.sum() - hc.sum()) / float(nj.sum())
    diffs, p_worse = paired_bootstrap(hc, hr, nj, groups, margin=margin, resamples=resamples, seed=seed)
    ci = (float(np.percentile(diffs, 5)), float(np.percentile(diffs, 95)))
    if crops < min_crops:
        why, ok = f"too little evidence: {crops} gate crops < {min_crops}", False
    elif diff > margin:
        why, ok = f"worse on the gate: {diff:+.2f} points of disagreement (margin {margin:g})", False
    elif margin == 0 and diff >= 0:
        why, ok = (f"no gain on the gate: {diff:+.2f} points of disagreement on {crops} gate crops (a swap needs a "
                   "measured gain; --gate-margin > 0 accepts a tie)"), False
    elif p_worse > max_risk:
        why, ok = f"not shown to be no worse: worse in {100 * p_worse:.0f} % of resamples > {100 * max_risk:.0f} %", False
    else:
        why, ok = (f"{diff:+.2f} points of disagreement on {crops} gate crops, worse in "
                   f"{100 * p_worse:.0f} % of resamples (<= {100 * max_risk:.0f} %)"), True
    return GateDecision(ok, why, diff, p_worse, ci, crops, frames)


__all__ = ["GateDecision", "decide", "frame_groups", "paired_bootstrap", "per_crop_hits"]
