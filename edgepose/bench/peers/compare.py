"""edgepose pipelines and peers on the same inputs, interleaved in one run (issue 23).

Every pipeline answers the same frame before the next frame is decoded, in an order that rotates
each round (A, B, C / B, C, A / ...), so the machine's load drifts over all of them alike and
latency ratios are taken per round (per frame). Decoding is outside every timed span; a peer's
time is measured inside its worker (pipe transfer excluded), edgepose's around
``PoseEstimator.detect_for_video`` / ``detect`` in this process. CPU time is
``time.process_time`` of the process that did the work, over the same span.

* :func:`run_video`: one clip in video mode (tracking, smoothing): latency, CPU, detections,
  jitter, agreement with a reference track.
* :func:`run_images`: the evaluation set in image mode, each pipeline finding people on the full
  image itself (a missed person scores zero): PCK@0.2 x torso.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepose.types import to_coco17

log = logging.getLogger(__name__)

#: Keypoints given to a labelled person nobody found: far outside every image (a certain miss).
MISSED = -1e6


@dataclass
class Answer:
    """One pipeline's answer for one frame: COCO-17 poses (frame px), wall and CPU ms, stages."""

    poses: list[np.ndarray]
    scores: list[np.ndarray]
    ms: float
    cpu_ms: float
    stages: dict = field(default_factory=dict)


class EdgePipeline:
    """An edgepose model card in a :class:`~edgepose.estimator.PoseEstimator`.

    ORT sessions are opened without thread spinning: spinning workers would burn the CPU the
    interleaved peer needs (and edgepose's own timings would not change by more than noise).
    ``model_dir``: an extra folder searched for the card's files (a suite's ``--assets ROOT/models``).
    """

    kind = "edgepose"

    def __init__(self, name: str, card: str, *, threads: int, model_dir=None):
        from edgepose.models import get_card, load_model

        self.name, self.card, self.threads = name, card, threads
        kw = {"spin": False} if get_card(card).files[0].endswith(".onnx") else {}
        self.model = load_model(card, num_threads=threads, model_dir=model_dir, **kw)
        self._est = {}

    def _estimator(self, mode: str):
        from edgepose.estimator import EstimatorOptions, PoseEstimator, RunningMode

        if mode not in self._est:
            self._est[mode] = PoseEstimator(self.model, options=EstimatorOptions(running_mode=RunningMode(mode)))
        return self._est[mode]

    def reset(self) -> None:
        est = self._est.pop("video", None)
        if est is not None:
            est.close()

    def __call__(self, image: np.ndarray, ts_ms: int, mode: str) -> Answer:
        est = self._estimator(mode)
        c0, t0 = time.process_time(), time.perf_counter()
        res = est.detect_for_video(image, ts_ms) if mode == "video" else est.detect(image)
        ms, cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
        return Answer([np.asarray(p.keypoints, np.float64) for p in res.poses],
                      [np.asarray(p.scores, np.float64) for p in res.poses], ms, cpu,
                      {k: float(v) for k, v in (res.timings_ms or {}).items() if k != "total"})

    def close(self) -> None:
        for est in self._est.values():
            est.close()
        self.model.close()


class PeerPipeline:
    """A peer process (:func:`edgepose.bench.peers.open_peer`) as a pipeline."""

    kind = "peer"

    def __init__(self, name: str, peer: str, *, threads: int):
        from edgepose.bench.peers import get_peer, open_peer

        self.name, self.peer, self.threads = name, peer, threads
        self.format = get_peer(peer).keypoint_format
        self.proc = open_peer(peer, threads=threads)

    def reset(self) -> None:
        self.proc.reset()

    def __call__(self, image: np.ndarray, ts_ms: int, mode: str) -> Answer:
        r = self.proc.frame(image, ts_ms=ts_ms, mode=mode)
        poses, scores = [], []
        for p in r.poses:
            kps, _ = to_coco17(np.asarray(p[:, :2], np.float64), self.format)
            poses.append(kps)
            vis, _ = to_coco17(np.asarray(p[:, 3], np.float64), self.format) if p.shape[1] > 3 else (None, None)
            scores.append(vis if vis is not None else np.ones(len(kps)))
        return Answer(poses, scores, r.ms, r.cpu_ms, {"pipe_roundtrip": r.roundtrip_ms})

    def close(self) -> None:
        self.proc.close()


def _rotated(items: list, k: int) -> list:
    k %= len(items)
    return items[k:] + items[:k]


def _pct(v, q) -> float | None:
    return round(float(np.percentile(v, q)), 3) if len(v) else None


def warm_up(pipes, image: np.ndarray, modes=("video", "image"), n: int = 3) -> None:
    """A few untimed frames in each mode (lazy model loading, allocations), then a clean state."""
    for mode in modes:
        for i in range(n):
            for p in pipes:
                p(image, i * 33, mode)
    for p in pipes:
        p.reset()


def run_video(pipes, clip: str | Path, *, max_frames: int | None = None, reference=None,
              baseline: str | None = None, raw: dict | None = None) -> dict:
    """All ``pipes`` on one clip in video mode, frame by frame, rotating the order each frame.

    Args:
        pipes: pipelines (:class:`EdgePipeline`, :class:`PeerPipeline`); each is reset first.
        clip: a video file.
        max_frames: only the first N frames.
        reference: a :class:`~edgepose.eval.video.ReferenceTrack` for agreement, or None.
        baseline: the pipeline name ratios are taken against (default: the first peer).
        raw: a dict that receives the per-frame samples: ``{"ms": {name: array}, "cpu_ms": {...},
            "tracks": {name: (T, 17, 2) COCO-17, nan where no pose}}``.

    Returns:
        ``{"clip", "frames", "fps", "pipelines": {name: metrics}, "ratios": {name: per-round stats}}``.
    """
    from edgepose.eval.jitter import mean_acceleration_error
    from edgepose.eval.video import compare_tracks, temporal_comparison, track_array
    from edgepose.types import SHARED13
    from edgepose.video.sources import VideoFileSource

    for p in pipes:
        p.reset()
    tracks = {p.name: [] for p in pipes}
    times = {p.name: [] for p in pipes}
    cpu = {p.name: [] for p in pipes}
    stages = {p.name: {} for p in pipes}
    t_run = time.perf_counter()
    with VideoFileSource(clip, max_frames=max_frames) as src:
        fps = src.fps
        for i, fr in enumerate(src):
            for p in _rotated(list(pipes), i):
                a = p(fr.image, fr.timestamp_ms, "video")
                tracks[p.name].append(a.poses[0] if a.poses else None)
                times[p.name].append(a.ms)
                cpu[p.name].append(a.cpu_ms)
                for k, v in a.stages.items():
                    stages[p.name].setdefault(k, []).append(v)
    n = len(next(iter(times.values())))
    out = {"clip": Path(clip).name, "frames": n, "fps": round(float(fps), 3),
           "seconds": round(time.perf_counter() - t_run, 1), "pipelines": {}, "ratios": {}}
    j = list(SHARED13)
    for p in pipes:
        name = p.name
        row = {"kind": p.kind, "latency_ms": {"p50": _pct(times[name], 50), "p95": _pct(times[name], 95),
                                              "mean": round(float(np.mean(times[name])), 3)},
               "cpu_ms": {"p50": _pct(cpu[name], 50), "mean": round(float(np.mean(cpu[name])), 3)},
               "frames_with_person": sum(k is not None for k in tracks[name]),
               "stages_ms_p50": {k: _pct(v, 50) for k, v in stages[name].items()},
               "stage_counts": {k: len(v) for k, v in stages[name].items()},
               "stages_ms_mean": {k: round(float(np.mean(v)), 3) for k, v in stages[name].items()}}
        arr = track_array(tracks[name])
        row["accel_px"] = _round(mean_acceleration_error(arr[:, j]))  # no reference: the track's own
        if reference is not None:
            agree = compare_tracks(tracks[name], reference)
            temp = temporal_comparison(tracks[name], reference, fps)
            row["reference"] = {"pck_torso": agree["pck_torso"], "mean_px_error": agree["mean_px_error"],
                                "missed_frames": agree["missed_frames"], "accel_error": temp["accel_error"],
                                "ref_frames": agree["ref_frames"]}
        out["pipelines"][name] = row
    if raw is not None:
        raw["ms"] = {k: np.asarray(v) for k, v in times.items()}
        raw["cpu_ms"] = {k: np.asarray(v) for k, v in cpu.items()}
        raw["tracks"] = {k: track_array(v) for k, v in tracks.items()}
    base = baseline or next((p.name for p in pipes if p.kind == "peer"), None)
    if base is not None:
        b = np.asarray(times[base])
        for p in pipes:
            if p.name != base:
                r = np.asarray(times[p.name]) / b
                out["ratios"][p.name] = {"vs": base, "median": _pct(r, 50), "p25": _pct(r, 25), "p75": _pct(r, 75),
                                         "rounds": len(r)}
    return out


def _round(v) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def _match(preds: list[np.ndarray], scores: list[np.ndarray], people) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each predicted pose to at most one labelled person of the image (greedy, by median joint error
    over the person's box size); people left over get :data:`MISSED` keypoints."""
    from edgepose.types import SHARED13

    j = list(SHARED13)
    cost = np.full((len(preds), len(people)), np.inf)
    for a, kp in enumerate(preds):
        for b, person in enumerate(people):
            lab = person.keypoints[j, 2] > 0
            size = max(person.box[2] - person.box[0], person.box[3] - person.box[1], 1.0)
            err = np.linalg.norm(kp[j][lab] - person.keypoints[j][lab, :2], axis=1)
            cost[a, b] = float(np.median(err)) / size if lab.any() else np.inf
    out = [(np.full((17, 2), MISSED), np.zeros(17)) for _ in people]
    used_a, used_b = set(), set()
    for flat in np.argsort(cost, axis=None):
        a, b = np.unravel_index(flat, cost.shape)
        if a in used_a or b in used_b or not np.isfinite(cost[a, b]):
            continue
        used_a.add(a)
        used_b.add(b)
        out[b] = (preds[a], scores[a])
    return out


def run_images(pipes, people, *, progress: bool = False) -> dict:
    """All ``pipes`` in image mode on every image holding a labelled person, interleaved per image.

    Returns:
        ``{"images", "people", "pipelines": {name: {"rows": {set: EvalRow dict}, "pck_torso",
        "latency_ms", "cpu_ms", "people_found"}}}``; PCK over ALL people (a missed one scores 0).
    """
    from tqdm import tqdm

    from edgepose.eval.runner import ALL, HARD_ROW, PersonResult, _read_rgb, score
    from edgepose.eval.datasets import HARD

    by_image: dict = {}
    for p in people:
        by_image.setdefault(p.image_path, []).append(p)
    results = {p.name: [] for p in pipes}
    times = {p.name: [] for p in pipes}
    cpu = {p.name: [] for p in pipes}
    found = {p.name: 0 for p in pipes}
    for i, (path, ppl) in enumerate(tqdm(by_image.items(), disable=not progress, unit="image", leave=False)):
        rgb = _read_rgb(path)
        for p in _rotated(list(pipes), i):
            a = p(rgb, 0, "image")
            times[p.name].append(a.ms)
            cpu[p.name].append(a.cpu_ms)
            for person, (kp, sc) in zip(ppl, _match(a.poses, a.scores, ppl)):
                found[p.name] += bool(kp[0, 0] != MISSED)
                results[p.name].append(PersonResult(person, kp, sc, a.ms))
    out = {"images": len(by_image), "people": len(people), "pipelines": {}}
    for p in pipes:
        res = results[p.name]
        names = sorted({r.person.dataset for r in res})
        rows = [score(n, [r for r in res if r.person.dataset == n]) for n in names]
        rows.append(score(ALL, res))
        hard = [r for r in res if r.person.dataset in HARD]
        if hard:
            rows.append(score(HARD_ROW, hard))
        out["pipelines"][p.name] = {
            "kind": p.kind, "pck_torso": _round(rows[-2 if hard else -1].pck_torso),
            "pck_torso_hard": _round(rows[-1].pck_torso) if hard else None,
            "people_found": found[p.name],
            "latency_ms": {"p50": _pct(times[p.name], 50), "p95": _pct(times[p.name], 95)},
            "cpu_ms": {"mean": round(float(np.mean(cpu[p.name])), 3)},
            "rows": {r.name: {"n": r.n_people, "pck_torso": _round(r.pck_torso), "pck_bbox": _round(r.pck_bbox)}
                     for r in rows}}
    return out


def common_frame_jitter(tracks: dict, names) -> dict:
    """Each track's mean acceleration (px/frame^2, the 13 shared joints) over the frames where every
    one of ``names`` has a pose: a like-for-like jitter figure when pipelines lose the person on
    different frames (vtest's small pedestrians)."""
    from edgepose.eval.jitter import mean_acceleration_error
    from edgepose.types import SHARED13

    j = list(SHARED13)
    both = np.all([np.isfinite(tracks[n][:, j]).all(axis=(1, 2)) for n in names], axis=0)
    out = {"frames": int(both.sum())}
    for n in names:
        t = tracks[n][:, j].copy()
        t[~both] = np.nan
        out[n] = _round(mean_acceleration_error(t))
    return out


__all__ = ["EdgePipeline", "PeerPipeline", "Answer", "run_video", "run_images", "warm_up", "common_frame_jitter",
           "MISSED"]
