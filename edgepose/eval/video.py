"""Video agreement: compare a tracked run with a reference track (mean px error, PCK@0.2 torso)
and its temporal quality (acceleration error, high-frequency energy: :func:`temporal_comparison`).

The reference tracks shipped with the tfjs test clips are model outputs, not human labels:
``pose_1.json`` (tfjs MoveNet, per frame a dict ``{name: {"x", "y"}}`` of the 17 COCO keypoints)
and ``pose_squats.full.json`` (BlazePose full, per frame 33 ``[x, y, z]`` landmarks, mapped to
COCO-17 through ``FORMAT_TO_COCO17["blazepose33"]``). Use them for agreement, jitter and drift
checks, not as accuracy ground truth.

Example:
    >>> ref = load_reference("pose_1.json")
    >>> pred = run_tracked(model, "pose_1.mp4")
    >>> compare_tracks(pred, ref)["pck_torso"]
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgepose.errors import ConfigError
from edgepose.eval.metrics import TORSO_ALPHA, torso_size
from edgepose.models.base import PoseModel
from edgepose.types import KEYPOINT_NAMES, NUM_KEYPOINTS, to_coco17

log = logging.getLogger(__name__)

#: Joints compared by default: all 17 (both reference tracks give every COCO-17 keypoint).
ALL_JOINTS: tuple[int, ...] = tuple(range(NUM_KEYPOINTS))


@dataclass
class ReferenceTrack:
    """A per-frame reference track in COCO-17 frame pixels.

    Attributes:
        keypoints: one (17, 2) array per frame, None where the reference has no pose.
        source_format: ``"coco17"`` or ``"blazepose33"``, the format the file was written in.
        path: the file it was read from.
    """

    keypoints: list[np.ndarray | None]
    source_format: str
    path: str = ""

    def __len__(self) -> int:
        return len(self.keypoints)


def _parse_frame(frame, path: str, index: int) -> tuple[np.ndarray | None, str]:
    """One frame of a reference file -> ((17, 2) COCO-17 or None, source format)."""
    if frame is None or (hasattr(frame, "__len__") and len(frame) == 0):
        return None, ""
    if isinstance(frame, dict):  # tfjs: {"nose": {"x":..., "y":...}, ...}
        missing = [n for n in KEYPOINT_NAMES if n not in frame]
        if missing:
            raise ConfigError(f"reference {path!r} frame {index}: keypoints {missing} missing; a "
                              f"COCO-17 frame names all of: {', '.join(KEYPOINT_NAMES)}")
        return np.array([[frame[n]["x"], frame[n]["y"]] for n in KEYPOINT_NAMES], np.float64), "coco17"
    arr = np.asarray(frame, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] in (33, 39) and arr.shape[1] >= 2:  # BlazePose landmarks
        coco, _ = to_coco17(arr[:33, :2], "blazepose33")
        return coco, "blazepose33"
    if arr.ndim == 2 and arr.shape[0] == 17 and arr.shape[1] >= 2:
        return arr[:, :2].copy(), "coco17"
    raise ConfigError(
        f"reference {path!r} frame {index}: cannot read a pose of shape {arr.shape}; expected a "
        "dict of 17 COCO keypoints {name: {x, y}}, 33 BlazePose [x, y, z] rows or 17 [x, y] rows"
    )


def load_reference(path: str | os.PathLike) -> ReferenceTrack:
    """Read a reference track (tfjs ``pose_1.json`` or BlazePose ``pose_squats.full.json`` style).

    Raises:
        ConfigError: the file is missing or a frame has an unknown layout.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"reference file {str(p)!r} not found; pass --reference with a JSON "
                          "track such as $EDGEPOSE_ASSETS/data/tfjs_testdata/pose_1.json")
    with open(p) as fh:
        data = json.load(fh)
    if not isinstance(data, list):
        raise ConfigError(f"reference {str(p)!r} is a JSON {type(data).__name__}; expected a list "
                          "with one pose per frame")
    frames, fmt = [], ""
    for i, fr in enumerate(data):
        kps, f = _parse_frame(fr, str(p), i)
        frames.append(kps)
        fmt = fmt or f
    log.info("reference %s: %d frames (%s)", p, len(frames), fmt)
    return ReferenceTrack(frames, fmt or "coco17", str(p))


def compare_tracks(pred: Sequence[np.ndarray | None], ref: ReferenceTrack | Sequence[np.ndarray | None],
                   *, alpha: float = TORSO_ALPHA, joints: Sequence[int] = ALL_JOINTS) -> dict:
    """Agreement of a predicted track with a reference track.

    Frames are matched by index over the shorter of the two tracks. A frame where the reference
    has a pose but the prediction does not counts as a miss: all its joints fail PCK, and it is
    left out of the pixel errors.

    Args:
        pred: per-frame (17, 2) COCO-17 keypoints in frame px, None where nothing was found.
        ref: a :class:`ReferenceTrack` or a list like ``pred``.
        alpha: PCK threshold as a fraction of the reference's torso size (default 0.2).
        joints: COCO-17 indices compared (default all 17).

    Returns:
        ``{"frames", "pred_frames", "ref_frames", "missed_frames", "mean_px_error",
        "median_px_error", "p90_px_error", "pck_torso", "per_joint_px_error"}``;
        PCK in percent.
    """
    ref_kps = ref.keypoints if isinstance(ref, ReferenceTrack) else list(ref)
    n = min(len(pred), len(ref_kps))
    if len(pred) != len(ref_kps):
        log.warning("track lengths differ: %d predicted vs %d reference frames; comparing the "
                    "first %d", len(pred), len(ref_kps), n)
    j = list(joints)
    errors, hits, total, missed = [], 0, 0, 0
    for t in range(n):
        r = ref_kps[t]
        if r is None:
            continue
        r = np.asarray(r, dtype=np.float64).reshape(-1, 2)
        torso = float(torso_size(np.column_stack([r, np.ones(len(r))])))
        if pred[t] is None:
            missed += 1
            total += len(j)
            continue
        e = np.linalg.norm(np.asarray(pred[t], dtype=np.float64).reshape(-1, 2)[j] - r[j], axis=1)
        errors.append(e)
        if np.isfinite(torso) and torso > 0:
            hits += int((e < alpha * torso).sum())
            total += len(j)
    err = np.stack(errors) if errors else np.zeros((0, len(j)))

    def stat(fn):
        return round(float(fn(err)), 3) if err.size else None

    return {
        "frames": n,
        "pred_frames": len(pred),
        "ref_frames": len(ref_kps),
        "missed_frames": missed,
        "mean_px_error": stat(np.mean),
        "median_px_error": stat(np.median),
        "p90_px_error": stat(lambda e: np.percentile(e, 90)),
        "pck_torso": round(100.0 * hits / total, 3) if total else None,
        "per_joint_px_error": ({KEYPOINT_NAMES[k]: round(float(v), 3) for k, v in zip(j, err.mean(0))}
                               if err.size else {}),
    }


def track_array(frames: Sequence[np.ndarray | None], n: int | None = None) -> np.ndarray:
    """Per-frame poses (None where missing) -> a (n, 17, 2) float64 track, nan where missing."""
    n = len(frames) if n is None else n
    out = np.full((n, NUM_KEYPOINTS, 2), np.nan)
    for t, k in enumerate(frames[:n]):
        if k is not None:
            out[t] = np.asarray(k, dtype=np.float64).reshape(NUM_KEYPOINTS, 2)
    return out


def temporal_comparison(pred: Sequence[np.ndarray | None],
                        ref: ReferenceTrack | Sequence[np.ndarray | None], fps: float) -> dict:
    """The temporal metrics of issue 7 (:func:`edgepose.eval.jitter.temporal_metrics`) of a
    predicted track against a reference, frames matched by index over the shorter track.

    Scored on the 13 joints every format shares (eyes and ears left out), as
    ``edgepose eval-temporal`` does; frames missing in either track are skipped.

    Returns:
        ``{"accel_error" (px/frame^2), "position_error" (px), "hf_energy", "hf_energy_error"
        (px^2 above ``cutoff_hz``), "pck", "pck05" (%), "cutoff_hz", "fps"}``.
    """
    from edgepose.eval.jitter import temporal_metrics

    ref_kps = ref.keypoints if isinstance(ref, ReferenceTrack) else list(ref)
    n = min(len(pred), len(ref_kps))
    out = temporal_metrics(track_array(pred, n), track_array(ref_kps, n), fps).to_dict()
    return {**out, "fps": round(float(fps), 3)}


def run_tracked(model: PoseModel, video_path: str | os.PathLike, *, smoothing: bool = True,
                max_frames: int | None = None, progress: bool = True) -> list[np.ndarray | None]:
    """Run ``model`` over a video with :class:`~edgepose.estimator.PoseEstimator` in video mode.

    Frame t's crop comes from frame t-1's pose; the detector (or a full-frame pass) runs when the
    pose is lost; keypoints are One Euro smoothed unless ``smoothing`` is False.

    Args:
        model: an open model card (left open).
        video_path: a video file readable by OpenCV.
        smoothing: One Euro smoothing as the estimator does by default.
        max_frames: stop after this many frames (None: the whole video).
        progress: show a tqdm progress bar on stderr.

    Returns:
        Per frame, (17, 2) COCO-17 keypoints in frame px, or None where no pose was reported.
    """
    from tqdm import tqdm

    from edgepose.estimator import EstimatorOptions, PoseEstimator, RunningMode
    from edgepose.video.sources import VideoFileSource

    out: list[np.ndarray | None] = []
    opts = EstimatorOptions(running_mode=RunningMode.VIDEO, smoothing=smoothing)
    with VideoFileSource(video_path, max_frames=max_frames) as src, \
            PoseEstimator(model, options=opts) as est, \
            tqdm(total=len(src) or None, desc=model.name, unit="frame", disable=not progress,
                 leave=False) as bar:
        for frame in src:
            pose = est.detect_for_video(frame.image, frame.timestamp_ms).pose
            out.append(None if pose is None else np.asarray(pose.keypoints, dtype=np.float64))
            bar.update(1)
    log.info("tracked %d frames of %s (%d without a pose)", len(out), video_path,
             sum(k is None for k in out))
    return out


__all__ = ["ReferenceTrack", "load_reference", "compare_tracks", "temporal_comparison", "track_array",
           "run_tracked", "ALL_JOINTS"]
