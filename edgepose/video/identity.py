"""Whom a single-person tracker follows in a multi-person scene: target choice and identity guard.

A single-person tracker (:class:`~edgepose.estimator.PoseEstimator` in video mode) crops each
frame around the previous pose. With several people in view, the person it follows changes when
it (re)acquires: a full-frame pass of a single-person model returns whichever person that model
finds most salient, so two models (an edge model and its teacher, or the edge and the server)
pick different people, and a re-detection after a loss often lands on someone else.

``EstimatorOptions(person_selection="nearest")`` makes the choice explicit and model-independent:

* a person detector (MoveNet MultiPose) lists everyone when there is no track (a start, or the
  crop lost the person); the tracker takes the person nearest the last tracked pose (its crop
  centre, moved on at its recent velocity) when one lies within :data:`SEARCH_RADIUS` x the last
  crop's side and the last pose is at most :data:`ANCHOR_MAX_AGE_MS` old, else the largest
  person box (ties: the first, i.e. the detector's best score);
* a pose whose crop centre jumps more than ``identity_gate`` x the previous crop's side (the crop
  slid onto a neighbour, or an outside pose such as a server answer is of another person) is not
  taken as the same person: the tracker asks the detector again (nearest rule), and an outside
  re-seed is refused. When the single-person model, run on the chosen person's crop, answers a
  neighbour, the detector's own pose of the chosen person is kept for that frame.

The functions here are pure Python over a few boxes (no numpy per call).
"""

from __future__ import annotations

from dataclasses import dataclass

#: A lost track's last position steers re-acquisition for at most this long (tfjs tracker max age).
ANCHOR_MAX_AGE_MS = 1000
#: MoveNet MultiPose people kept as candidates from this person score up (its own default, tfjs's
#: 0.25, misses most of the small walkers of vtest's training frames, which score 0.15-0.3).
DETECT_MIN_SCORE = 0.15
#: A lost person is searched for within this many crop sides of its predicted position.
SEARCH_RADIUS = 1.0
#: Weight of the previous velocity in the anchor's running velocity estimate.
VELOCITY_SMOOTHING = 0.7
#: Valid values of ``EstimatorOptions.person_selection``.
PERSON_SELECTIONS = ("model", "nearest")


@dataclass
class Anchor:
    """Where the followed person was last seen and how it moved.

    Attributes:
        cx, cy: crop centre (frame px) at ``ts``.
        side: crop side (frame px).
        ts: timestamp (ms).
        vx, vy: smoothed velocity of the centre (px / ms); walkers who cross move apart, so the
            predicted position tells them apart where the last position cannot.
    """

    cx: float
    cy: float
    side: float
    ts: int
    vx: float = 0.0
    vy: float = 0.0

    @classmethod
    def of_roi(cls, roi, ts: int) -> "Anchor":
        return cls(float(roi.cx), float(roi.cy), float(max(roi.width, roi.height)), int(ts))

    def follow(self, roi, ts: int) -> "Anchor":
        """The anchor one step on, at ``roi`` (the same person): velocity smoothed over steps."""
        dt = int(ts) - self.ts
        a = Anchor.of_roi(roi, ts)
        if 0 < dt <= ANCHOR_MAX_AGE_MS:
            a.vx = VELOCITY_SMOOTHING * self.vx + (1.0 - VELOCITY_SMOOTHING) * (a.cx - self.cx) / dt
            a.vy = VELOCITY_SMOOTHING * self.vy + (1.0 - VELOCITY_SMOOTHING) * (a.cy - self.cy) / dt
        return a

    def distance(self, cx: float, cy: float, ts: int | None = None) -> float:
        """Distance of a point from the anchor (its predicted position at ``ts``) in crop sides."""
        px, py = self.cx, self.cy
        if ts is not None:
            dt = min(max(int(ts) - self.ts, 0), ANCHOR_MAX_AGE_MS)
            px, py = px + self.vx * dt, py + self.vy * dt
        return ((cx - px) ** 2 + (cy - py) ** 2) ** 0.5 / max(self.side, 1.0)

    def fresh(self, ts: int | None, max_age_ms: int = ANCHOR_MAX_AGE_MS) -> bool:
        """Whether the anchor may still steer a choice at ``ts`` (None: no clock, always)."""
        return ts is None or ts - self.ts <= max_age_ms


def choose_person(boxes, anchor: Anchor | None, gate: float = SEARCH_RADIUS, ts: int | None = None) -> int | None:
    """Index of the person to follow among detector ``boxes`` (x0, y0, x1, y1), or None.

    With a fresh anchor (seen at most :data:`ANCHOR_MAX_AGE_MS` before ``ts``): the box whose
    centre is nearest the anchor's predicted position, if within ``gate`` x the anchor's side.
    Otherwise the largest box (area; the first of equal ones). None when ``boxes`` is empty.
    (Waiting for a lost person instead of taking the largest was tried on vtest's training frames:
    two trackers that parted at a crossing then never meet again; 57 vs 89 % same person.)
    """
    boxes = [tuple(float(v) for v in b) for b in boxes]
    if not boxes:
        return None
    if anchor is not None and anchor.fresh(ts):
        d = [anchor.distance((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, ts) for b in boxes]
        best = min(range(len(boxes)), key=lambda i: (d[i], i))
        if d[best] <= gate:
            return best
    areas = [max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0) for b in boxes]
    return max(range(len(boxes)), key=lambda i: (areas[i], -i))


def jumped(roi, anchor: Anchor | None, gate: float, ts: int | None = None) -> bool:
    """Whether a pose's next crop ``roi`` lies more than ``gate`` x the anchor's side from the anchor
    (its predicted position at ``ts`` when given)."""
    if roi is None or anchor is None:
        return False
    return anchor.distance(roi.cx, roi.cy, ts) > gate


__all__ = ["Anchor", "choose_person", "jumped", "ANCHOR_MAX_AGE_MS", "DETECT_MIN_SCORE", "PERSON_SELECTIONS",
           "SEARCH_RADIUS"]
