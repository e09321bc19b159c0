"""Per-person tracking across frames: OKS / IoU matching, stable ids, births and deaths.

Follows the tfjs pose-detection trackers (``KeypointTracker`` / ``BoundingBoxTracker``): a new
frame's poses are matched to live tracks by similarity, most similar pair first; a match needs
at least ``min_similarity``; an unmatched pose starts a new track (a birth) with the next id;
a track not matched for ``max_age_ms`` dies. Similarity is the object keypoint similarity (OKS)
of the two poses when both have enough confident keypoints, else the IoU of their boxes.
Ids are never reused.

The time axis is the frames' ``timestamp_ms``, as everywhere in edgepose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepose.types import COCO_SIGMAS
from edgepose.errors import ConfigError

#: tfjs KeypointTracker defaults (pose-detection/src/calculators/constants.ts).
DEFAULT_MAX_AGE_MS = 1000
DEFAULT_MIN_OKS = 0.2
DEFAULT_KEYPOINT_THRESHOLD = 0.3
DEFAULT_MIN_KEYPOINTS = 4
#: tfjs BoundingBoxTracker's minimum IoU.
DEFAULT_MIN_IOU = 0.15


@dataclass
class TrackerOptions:
    """Options of :class:`MultiPersonTracker` (defaults: tfjs pose-detection's trackers).

    Attributes:
        max_age_ms: a track unmatched for longer than this dies (tfjs: 1000 ms): long enough to
            bridge a missed detection or a brief occlusion, short enough that a different
            person entering the same place later gets a new id.
        min_oks: least OKS for a keypoint match (tfjs KeypointTracker: 0.2).
        min_iou: least box IoU for a box match, used when a pose has too few confident
            keypoints for OKS (tfjs BoundingBoxTracker: 0.15).
        keypoint_threshold: keypoints above this score count in OKS (tfjs: 0.3).
        min_keypoints: OKS needs at least this many keypoints confident in both poses, else
            the IoU is used (tfjs: 4).
        max_tracks: live tracks kept at most; the least recently seen die first (bounds memory
            in crowds).
    """

    max_age_ms: int = DEFAULT_MAX_AGE_MS
    min_oks: float = DEFAULT_MIN_OKS
    min_iou: float = DEFAULT_MIN_IOU
    keypoint_threshold: float = DEFAULT_KEYPOINT_THRESHOLD
    min_keypoints: int = DEFAULT_MIN_KEYPOINTS
    max_tracks: int = 18

    def __post_init__(self):
        if not isinstance(self.max_age_ms, int) or self.max_age_ms < 0:
            raise ConfigError(f"TrackerOptions.max_age_ms must be an int >= 0, got {self.max_age_ms!r}")
        for f in ("min_oks", "min_iou", "keypoint_threshold"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"TrackerOptions.{f} must be in [0, 1], got {v!r}")
        if not isinstance(self.min_keypoints, int) or not 1 <= self.min_keypoints <= 17:
            raise ConfigError(f"TrackerOptions.min_keypoints must be an int in [1, 17], got {self.min_keypoints!r}")
        if not isinstance(self.max_tracks, int) or self.max_tracks < 1:
            raise ConfigError(f"TrackerOptions.max_tracks must be an int >= 1, got {self.max_tracks!r}")


@dataclass
class Track:
    """A tracked person.

    Attributes:
        track_id: the stable id.
        keypoints: (17, 2) last matched keypoints.
        scores: (17,) their scores.
        box: last (x0, y0, x1, y1).
        last_ms: timestamp of the last match.
        born_ms: timestamp of the birth.
        hits: frames matched so far.
    """

    track_id: int
    keypoints: np.ndarray
    scores: np.ndarray
    box: tuple[float, float, float, float]
    last_ms: int
    born_ms: int
    hits: int = 1


def box_iou(a, b) -> float:
    """IoU of two x0, y0, x1, y1 boxes (0 when either is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def pose_oks(kp_a: np.ndarray, sc_a: np.ndarray, kp_b: np.ndarray, sc_b: np.ndarray, area: float, *,
             threshold: float = DEFAULT_KEYPOINT_THRESHOLD, min_keypoints: int = DEFAULT_MIN_KEYPOINTS
             ) -> float | None:
    """OKS of two poses over keypoints confident in both (tfjs KeypointTracker); None when too few.

    Args:
        kp_a, kp_b: (17, 2) keypoints.
        sc_a, sc_b: (17,) scores.
        area: the scale (px^2), e.g. the track's box area.
        threshold: keypoint score both must exceed.
        min_keypoints: fewer shared confident keypoints than this gives None.
    """
    ok = (np.asarray(sc_a) > threshold) & (np.asarray(sc_b) > threshold)
    if int(ok.sum()) < min_keypoints:
        return None
    d2 = ((np.asarray(kp_a, dtype=np.float64) - kp_b) ** 2).sum(-1)[ok]
    var = (2.0 * COCO_SIGMAS[ok]) ** 2
    return float(np.exp(-d2 / (2.0 * max(area, 1.0) * var)).mean())


@dataclass
class TrackerStats:
    """Counters since creation: ``births`` (new ids), ``deaths`` (tracks expired)."""

    births: int = 0
    deaths: int = 0
    frames: int = 0


class MultiPersonTracker:
    """Assigns stable ids to the poses of successive frames.

    Example:
        >>> tr = MultiPersonTracker()
        >>> ids = tr.update(keypoints, scores, boxes, timestamp_ms=0)  # doctest: +SKIP

    Args:
        options: :class:`TrackerOptions`.
    """

    def __init__(self, options: TrackerOptions | None = None):
        self.options = options or TrackerOptions()
        self.tracks: list[Track] = []
        self.stats = TrackerStats()
        self._next_id = 0

    def similarity(self, track: Track, keypoints: np.ndarray, scores: np.ndarray, box) -> float:
        """OKS when enough keypoints are shared (0 below ``min_oks``), else IoU (0 below ``min_iou``)."""
        o = self.options
        x0, y0, x1, y1 = track.box
        area = max((x1 - x0) * (y1 - y0), 1.0)
        s = pose_oks(track.keypoints, track.scores, keypoints, scores, area,
                     threshold=o.keypoint_threshold, min_keypoints=o.min_keypoints)
        if s is not None:
            return s if s >= o.min_oks else 0.0
        iou = box_iou(track.box, box)
        return iou if iou >= o.min_iou else 0.0

    def update(self, keypoints, scores, boxes, timestamp_ms: int) -> list[int]:
        """Match one frame's poses to the tracks; returns one track id per pose, in input order.

        Args:
            keypoints: (N, 17, 2) or a list of (17, 2).
            scores: (N, 17).
            boxes: N boxes (x0, y0, x1, y1).
            timestamp_ms: the frame's timestamp (increasing).
        """
        ts = int(timestamp_ms)
        self.stats.frames += 1
        self._expire(ts)
        n = len(boxes)
        ids: list[int | None] = [None] * n
        pairs = []
        for ti, tr in enumerate(self.tracks):
            for pi in range(n):
                s = self.similarity(tr, keypoints[pi], scores[pi], boxes[pi])
                if s > 0.0:
                    pairs.append((s, ti, pi))
        pairs.sort(key=lambda p: -p[0])
        used_t: set[int] = set()
        for s, ti, pi in pairs:  # greedy: most similar pair first
            if ti in used_t or ids[pi] is not None:
                continue
            used_t.add(ti)
            tr = self.tracks[ti]
            tr.keypoints = np.asarray(keypoints[pi], dtype=np.float32).copy()
            tr.scores = np.asarray(scores[pi], dtype=np.float32).copy()
            tr.box = tuple(float(v) for v in boxes[pi])
            tr.last_ms, tr.hits = ts, tr.hits + 1
            ids[pi] = tr.track_id
        for pi in range(n):
            if ids[pi] is None:
                tr = Track(self._next_id, np.asarray(keypoints[pi], dtype=np.float32).copy(),
                           np.asarray(scores[pi], dtype=np.float32).copy(),
                           tuple(float(v) for v in boxes[pi]), ts, ts)
                self._next_id += 1
                self.stats.births += 1
                self.tracks.append(tr)
                ids[pi] = tr.track_id
        if len(self.tracks) > self.options.max_tracks:
            self.tracks.sort(key=lambda t: -t.last_ms)
            self.stats.deaths += len(self.tracks) - self.options.max_tracks
            del self.tracks[self.options.max_tracks:]
        return [int(i) for i in ids]

    def _expire(self, ts: int) -> None:
        alive = [t for t in self.tracks if ts - t.last_ms <= self.options.max_age_ms]
        self.stats.deaths += len(self.tracks) - len(alive)
        self.tracks = alive

    def live(self, timestamp_ms: int | None = None) -> list[Track]:
        """Tracks matched at ``timestamp_ms`` (default: the latest update), most recent first."""
        if not self.tracks:
            return []
        ts = max(t.last_ms for t in self.tracks) if timestamp_ms is None else int(timestamp_ms)
        return [t for t in self.tracks if t.last_ms == ts]

    def reset(self) -> None:
        """Forget every track (ids keep increasing; nothing is reused)."""
        self.stats.deaths += len(self.tracks)
        self.tracks = []


__all__ = ["MultiPersonTracker", "TrackerOptions", "Track", "TrackerStats", "box_iou", "pose_oks"]
