"""ROI tracking: the crop for frame t+1 from frame t's keypoints (MoveNet tfjs crop logic).

In the models layer (beside :class:`~edgepose.models._crop.Roi`) because a model card's own
``next_roi`` uses it; the video tracker and the estimator import it from here.
"""

from __future__ import annotations

import numpy as np

from edgepose.models._crop import Roi

#: A keypoint counts for cropping when its score exceeds this (tfjs MoveNet uses 0.2).
MIN_CROP_KEYPOINT_SCORE = 0.2
#: Torso range is scaled by this to get the crop half-side (tfjs MoveNet: 1.9).
TORSO_EXPANSION = 1.9
#: Body range is scaled by this (tfjs MoveNet: 1.2).
BODY_EXPANSION = 1.2

_TORSO = (5, 6, 11, 12)


def roi_from_keypoints(keypoints: np.ndarray, scores: np.ndarray, image_size: tuple[int, int],
                       *, min_score: float = MIN_CROP_KEYPOINT_SCORE) -> Roi | None:
    """Square ROI around a COCO-17 pose for the next frame, or None if the pose is lost.

    The pose is lost when neither hip nor any shoulder is confident (tfjs falls back to the
    full frame then; the estimator does the same through ``initial_roi``).

    Args:
        keypoints: (17, 2) frame px.
        scores: (17,) keypoint scores.
        image_size: (width, height) of the frame.
        min_score: score above which a keypoint is used.
    """
    w, h = image_size
    # Plain Python over 17 points: several times faster than numpy for arrays this small, and
    # this runs every frame inside the runtime-overhead budget. Same float64 arithmetic.
    kps = np.asarray(keypoints).tolist()
    ok = [s > min_score for s in np.asarray(scores).tolist()]
    if not ((ok[11] or ok[12]) and (ok[5] or ok[6])):
        return None
    hips = [kps[i] for i in (11, 12) if ok[i]]
    cx = sum(p[0] for p in hips) / len(hips)
    cy = sum(p[1] for p in hips) / len(hips)
    torso_range = max(max(abs(kps[i][0] - cx), abs(kps[i][1] - cy)) for i in _TORSO if ok[i])
    body_range = max(max(abs(p[0] - cx), abs(p[1] - cy)) for p, o in zip(kps, ok) if o)
    half = max(torso_range * TORSO_EXPANSION, body_range * BODY_EXPANSION)
    # Never larger than needed to cover the whole frame from this centre.
    half = min(half, max(cx, w - cx, cy, h - cy))
    if half <= 1.0:
        return None
    return Roi.square(cx, cy, 2.0 * half)
