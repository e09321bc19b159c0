"""Server answers inside the cloud-edge runtime: the cloud pose in frame pixels, the tracker hook
that re-seeds the estimator from it, the identity guard, and the per-request trace row.

The tracker hook: :func:`reseed_estimator` calls ``PoseEstimator.reseed(keypoints, scores,
image_size)``; :func:`other_person` asks its identity guard (``person_selection="nearest"``).
"""

from __future__ import annotations

import numpy as np

from edgepose.models._crop import apply_affine, invert_affine
from edgepose.types import Pose


def reseed_estimator(estimator, keypoints: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> None:
    """Make the estimator's next crop follow ``keypoints`` (frame px, COCO-17).

    The estimator may refuse a pose of another person (``person_selection="nearest"``).
    """
    estimator.reseed(keypoints, scores, image_size)


def other_person(estimator, keypoints: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> bool:
    """Whether the estimator's identity guard takes ``keypoints`` for someone else (False without one)."""
    check = getattr(estimator, "is_other_person", None)
    return bool(check(keypoints, scores, image_size)) if check is not None else False


def cloud_pose(estimator, out: np.ndarray, m: np.ndarray, image_size: tuple[int, int]) -> tuple[Pose | None, bool]:
    """The server's (17, 3) crop answer ``out`` (x, y, score in the crop of affine ``m``) as a
    frame-pixel :class:`Pose`, and whether it was refused as another person. None: too weak
    (mean score under the estimator's ``min_pose_score``) or of another person."""
    scores = out[:, 2].astype(np.float32)
    if float(scores.mean()) < estimator.options.min_pose_score:
        return None, False
    kps = apply_affine(invert_affine(m), out[:, :2]).astype(np.float32)
    if other_person(estimator, kps, scores, image_size):
        return None, True
    ok = scores > 0.2
    box = (tuple(float(v) for v in (*kps[ok].min(0), *kps[ok].max(0))) if ok.sum() >= 2
           else (0.0, 0.0, float(image_size[0]), float(image_size[1])))
    return Pose(kps, scores, box, float(scores.mean()), track_id=0), False


def copy_pose(p: Pose) -> Pose:
    return Pose(p.keypoints.copy(), p.scores.copy(), p.box, p.score, sigma=p.sigma, track_id=p.track_id)


def trace_row(idx: int, arr: float, due: float, rel: float, p) -> dict:
    """One row of ``CloudEdgeRuntime.offload_trace()``: times in ms from the frame's arrival."""
    r = p.reply
    row = {"frame": idx, "submit": round((p.t_submit - arr) * 1e3, 1), "due": round((due - arr) * 1e3, 1),
           "released": round((rel - arr) * 1e3, 1),
           "answer": None if p.t_done is None else round((p.t_done - arr) * 1e3, 1),
           "status": None if r is None else r.status, "used": p.consumed}
    if r is not None:
        row.update({k: round(getattr(r, k), 1) for k in ("queue_ms", "up_ms", "http_ms", "server_ms",
                                                          "infer_ms", "down_ms")})
    return row
