"""Training windows for the temporal models, normalised exactly as the runtime does.

Sequences are the frames where the edge model and the teacher both found the person and agree
on who it is (mean joint distance below ``max_disagree`` x person size: a switch to another
person is not jitter). Frame-rate variety comes from temporal strides: a 30 fps clip read
every 3rd frame is a 10 fps clip, so one model serves 5-60 fps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepose.compression.temporal.data import Pair, segments
from edgepose.video._temporal import MIN_SCALE


@dataclass
class Seq:
    """A gap-free run of frames (possibly strided) with both tracks."""

    edge: np.ndarray  # (N, 17, 2)
    teacher: np.ndarray  # (N, 17, 2)
    scores: np.ndarray  # (N, 17) edge scores
    fps: float
    name: str


def build_sequences(pairs: list[Pair], *, window: int, max_disagree: float = 0.25,
                    min_fps: float = 4.5, max_stride: int = 10) -> list[Seq]:
    """Strided, agreement-filtered sequences at least ``window`` frames long."""
    out = []
    for p in pairs:
        e, t = p.edge.keypoints.astype(np.float64), p.teacher.keypoints.astype(np.float64)
        ok = p.edge.present & p.teacher.present
        size = np.full(len(t), np.inf)
        size[ok] = (t[ok].max(axis=1) - t[ok].min(axis=1)).max(axis=1)
        dis = np.full(len(t), np.inf)
        dis[ok] = np.linalg.norm(e[ok] - t[ok], axis=-1).mean(axis=1) / np.maximum(size[ok], MIN_SCALE)
        ok &= dis < max_disagree
        for a, b in segments(ok, window):
            for s in range(1, max_stride + 1):
                if p.fps / s < min_fps:
                    break
                for ph in range(s):
                    idx = np.arange(a + ph, b, s)
                    if len(idx) >= window:
                        out.append(Seq(e[idx], t[idx], p.edge.scores[idx].astype(np.float64),
                                       p.fps / s, f"{p.name}/s{s}"))
    return out


class WindowBank:
    """All windows of ``window`` frames of a list of sequences, gathered in batches."""

    def __init__(self, seqs: list[Seq], window: int):
        self.window = window
        self.edge = np.concatenate([s.edge for s in seqs])
        self.teacher = np.concatenate([s.teacher for s in seqs])
        self.scores = np.concatenate([s.scores for s in seqs])
        starts, fps, off = [], [], 0
        for s in seqs:
            starts.append(off + np.arange(len(s.edge) - window + 1))
            fps.append(np.full(len(s.edge) - window + 1, float(s.fps)))
            off += len(s.edge)
        self.starts = np.concatenate(starts)
        #: frame rate of each window's sequence (the One Euro prefilter needs the frame times)
        self.fps = np.concatenate(fps)

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, idx: np.ndarray):
        """(B, T, 17, 2) edge, (B, T, 17, 2) teacher, (B, T, 17) scores for window ids ``idx``."""
        rows = self.starts[idx][:, None] + np.arange(self.window)[None]
        return self.edge[rows], self.teacher[rows], self.scores[rows]


def batch_scale(win: np.ndarray) -> np.ndarray:
    """Vectorised ``person_scale`` for (B, T, 17, 2) windows without nan -> (B,)."""
    ext = win.max(axis=2) - win.min(axis=2)  # (B, T, 2)
    return np.maximum(np.median(ext.max(axis=2), axis=1), MIN_SCALE)


def batch_channels(win: np.ndarray, scale: np.ndarray, center: np.ndarray | None = None):
    """(B, T, 17, 2) -> ((B, 34, T) normalised, (B, 34) centre); as ``to_channels`` per window."""
    b, t = win.shape[:2]
    ch = win.reshape(b, t, -1).transpose(0, 2, 1)
    if center is None:
        center = ch.mean(axis=2)
    return (ch - center[:, :, None]) / scale[:, None, None], center


def interp_matrix(window: int, k: int, n_real: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Linear map (T, T) from a window's values to the linear interpolation of its keyframes.

    Keyframes are at ``T-1, T-1-k, ...``; before the first keyframe the value is held. With
    ``n_real``, only the newest ``n_real`` keyframes are real and the older ones repeat the
    oldest real one (the stream-start padding the runtime uses).

    Returns:
        (matrix, (T,) keyframe mask).
    """
    pos = np.arange(window - 1, -1, -k)[::-1]  # ascending keyframe positions
    if n_real is not None and n_real < len(pos):
        src = np.maximum(pos, pos[len(pos) - n_real])
    else:
        src = pos
    m = np.zeros((window, window))
    for t in range(window):
        if t <= pos[0]:
            m[t, src[0]] = 1.0
            continue
        i = np.searchsorted(pos, t)  # pos[i-1] < t <= pos[i]
        if pos[i] == t:
            m[t, src[i]] = 1.0
            continue
        a, b = pos[i - 1], pos[i]
        w = (t - a) / (b - a)
        m[t, src[i - 1]] += 1 - w
        m[t, src[i]] += w
    mask = np.zeros(window)
    mask[pos] = 1.0
    return m, mask
