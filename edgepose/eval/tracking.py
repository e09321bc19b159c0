"""Tracking quality without ground-truth tracks: the id-switch proxy of multi-person tracking.

Counted from the tracker's output alone (``id -> [(frame, box)]``, boxes ``(x0, y0, x1, y1)``):

* a *jump*: one id moves between two consecutive observations by more than half the larger side
  of its previous box (at 50 fps a person moves a few percent of its size per frame);
* a *fragment*: an id is last seen at frame f and a new id appears within ``gap`` frames of f,
  its first box centre within half the larger side of the old id's last box (the same person
  given a new id). Each ended id explains at most one new id.

``benchmarks/multiperson_eval.py`` reports it per 100 frames on a crowded video.
"""

from __future__ import annotations

import numpy as np


def _centre(b) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0])


def _side(b) -> float:
    return max(b[2] - b[0], b[3] - b[1], 1.0)


def id_switches(tracks: dict[int, list[tuple[int, tuple]]], *, gap: int) -> dict[str, int]:
    """Jumps, fragments and their sum (``switches``) of ``tracks`` (id -> [(frame, box)], in frame order)."""
    jumps = 0
    for obs in tracks.values():
        for (_, a), (_, b) in zip(obs, obs[1:]):
            if np.linalg.norm(_centre(b) - _centre(a)) > 0.5 * max(_side(a), _side(b)):
                jumps += 1
    ends = sorted((obs[-1][0], tid) for tid, obs in tracks.items())
    births = sorted((obs[0][0], tid) for tid, obs in tracks.items())
    used, fragments = set(), 0
    for fb, tid in births:
        first = tracks[tid][0][1]
        for fe, old in ends:
            if old == tid or old in used or not (fe < fb <= fe + gap):
                continue
            last = tracks[old][-1][1]
            if np.linalg.norm(_centre(first) - _centre(last)) <= 0.5 * _side(last):
                used.add(old)
                fragments += 1
                break
    return {"jumps": jumps, "fragments": fragments, "switches": jumps + fragments}
