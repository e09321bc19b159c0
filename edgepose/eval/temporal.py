"""Keypoint tracks of videos: run a model over a clip, load reference tracks, cache as .npz.

The temporal evaluation (``edgepose eval-temporal``) and the temporal training recipes
(``edgepose.compression.temporal``) share these. A :class:`Track` holds one person's COCO-17
keypoints per frame, ``nan`` where the model found nobody (or did not run: sparse keyframes).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepose.assets import ASSETS_ENV, AssetsNotFoundError, assets_dir
from edgepose.errors import ConfigError, unknown_name
from edgepose.types import KEYPOINT_NAMES, NUM_KEYPOINTS, to_coco17

log = logging.getLogger(__name__)


@dataclass
class Track:
    """One person's keypoints over a clip.

    Attributes:
        keypoints: (T, 17, 2) float32 pixels; nan where missing.
        scores: (T, 17) float32 keypoint scores; nan where missing (1 for references without).
        fps: frame rate of the clip.
        frames: (T,) int frame indices in the video.
        infer_ms: (T,) wall time of the model call per frame (nan where it did not run).
        meta: free-form provenance (model, video, keyframe interval).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    fps: float
    frames: np.ndarray
    infer_ms: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def present(self) -> np.ndarray:
        """(T,) bool: frames with a pose."""
        return np.isfinite(self.keypoints).all(axis=(1, 2))

    def save(self, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, keypoints=self.keypoints, scores=self.scores, fps=self.fps,
                            frames=self.frames,
                            infer_ms=self.infer_ms if self.infer_ms is not None else np.zeros(0),
                            meta=json.dumps(self.meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Track":
        with np.load(path) as z:
            ms = z["infer_ms"]
            return cls(z["keypoints"], z["scores"], float(z["fps"]), z["frames"],
                       ms if ms.size else None, json.loads(str(z["meta"])))


def run_model_track(model, video: str | os.PathLike, *, start: int = 0, stop: int | None = None,
                    keyframe_interval: int = 1, smoothing: bool = False,
                    num_threads: int | None = 1) -> Track:
    """Run a pose model in video mode (ROI tracking, no smoothing) over frames [start, stop).

    With ``keyframe_interval`` k > 1 the model sees only frames start, start + k, ... (the ROI
    of each comes from the previous keyframe, as in deployment); the other frames are nan.

    Args:
        model: a model card name (e.g. ``"movenet-lightning-int8"``) or a loaded PoseModel.
        video: the video file.
        start: first frame index.
        stop: one past the last frame index (None: to the end).
        keyframe_interval: run the model on every k-th frame.
        smoothing: apply the estimator's One Euro filter (the SDK's default video pipeline).
        num_threads: intra-op threads when ``model`` is a name.
    """
    from edgepose.estimator import EstimatorOptions, PoseEstimator
    from edgepose.video.sources import VideoFileSource

    if not isinstance(keyframe_interval, int) or keyframe_interval < 1:
        raise ConfigError(f"keyframe_interval must be an int >= 1, got {keyframe_interval!r}")
    opts = EstimatorOptions(running_mode="video", smoothing=smoothing)
    est = PoseEstimator(model, options=opts, num_threads=num_threads)
    kps, scores, frames, ms = [], [], [], []
    n = None if stop is None else max(0, stop - start)
    try:
        with VideoFileSource(video, max_frames=n, start=start) as src:
            fps = src.fps
            for fr in src:
                frames.append(fr.index)
                if (fr.index - start) % keyframe_interval:
                    kps.append(np.full((NUM_KEYPOINTS, 2), np.nan, np.float32))
                    scores.append(np.full(NUM_KEYPOINTS, np.nan, np.float32))
                    ms.append(np.nan)
                    continue
                t0 = time.perf_counter()
                res = est.detect_for_video(fr.image, fr.timestamp_ms)
                ms.append((time.perf_counter() - t0) * 1e3)
                pose = res.pose
                if pose is None:
                    kps.append(np.full((NUM_KEYPOINTS, 2), np.nan, np.float32))
                    scores.append(np.full(NUM_KEYPOINTS, np.nan, np.float32))
                else:
                    kps.append(np.asarray(pose.keypoints, np.float32))
                    scores.append(np.asarray(pose.scores, np.float32))
    finally:
        est.close()
    name = model if isinstance(model, str) else getattr(model, "name", "model")
    return Track(np.stack(kps), np.stack(scores), fps, np.asarray(frames), np.asarray(ms),
                 {"model": name, "video": os.fspath(video), "start": start, "stop": stop,
                  "keyframe_interval": keyframe_interval, "smoothing": smoothing})


def cached_model_track(cache_dir: str | os.PathLike, model, video: str | os.PathLike, **kwargs) -> Track:
    """:func:`run_model_track`, cached as .npz in ``cache_dir`` (keyed by model, video, range, k
    and, when smoothing, the default One Euro parameters)."""
    name = model if isinstance(model, str) else getattr(model, "name", "model")
    smooth = ""
    if kwargs.get("smoothing"):  # the estimator's default One Euro filter, keyed by its parameters
        from edgepose.video.one_euro import OneEuroConfig

        c = OneEuroConfig()
        smooth = f"__oneeuro2-{c.min_cutoff:g}-{c.beta:g}-{c.d_cutoff:g}"
    key = "{}__{}__{}-{}__k{}{}".format(name, Path(video).stem, kwargs.get("start", 0),
                                        kwargs.get("stop"), kwargs.get("keyframe_interval", 1), smooth)
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        return Track.load(path)
    log.info("running %s on %s -> %s", name, video, path)
    tr = run_model_track(model, video, **kwargs)
    tr.save(path)
    return tr


# -- evaluation clips ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Clip:
    """An evaluation clip and where its reference track comes from.

    Attributes:
        name: short name used in reports.
        video: path relative to the assets folder (:func:`edgepose.assets.assets_dir`).
        start, stop: frame range [start, stop) evaluated.
        reference: ``"tfjs-json"`` (pose_1.json), ``"blazepose33-json"`` (pose_squats) or a
            model card name whose per-frame track is the reference (teacher).
        reference_file: the reference json, relative to the assets folder.
    """

    name: str
    video: str
    start: int
    stop: int | None
    reference: str
    reference_file: str = ""


#: Evaluation clips of issue 7 (evaluation only; $EDGEPOSE_ASSETS/ASSETS.md).
EVAL_CLIPS: dict[str, Clip] = {c.name: c for c in (
    Clip("pose_1", "data/tfjs_testdata/pose_1.mp4", 0, 120, "tfjs-json",
         "data/tfjs_testdata/pose_1.json"),
    Clip("pose_squats", "data/tfjs_testdata/pose_squats.mp4", 0, 65, "blazepose33-json",
         "data/tfjs_testdata/pose_squats.full.json"),
    Clip("body3d_eval", "data/mmpose_mini/demo_resources/body3d_demo.mp4", 299, 399,
         "movenet-thunder-fp32"),
)}


def load_reference_json(path: str | os.PathLike, fmt: str) -> np.ndarray:
    """A (T, 17, 2) reference track from the tfjs test data json (``tfjs-json`` or ``blazepose33-json``)."""
    with open(path) as f:
        data = json.load(f)
    if fmt == "tfjs-json":
        return np.asarray([[[d[n]["x"], d[n]["y"]] for n in KEYPOINT_NAMES] for d in data],
                          dtype=np.float32)
    if fmt == "blazepose33-json":
        out = []
        for frame in data:
            coco, present = to_coco17(np.asarray(frame, dtype=np.float32)[:, :2], "blazepose33")
            coco[~present] = np.nan
            out.append(coco)
        return np.stack(out)
    raise unknown_name("reference format", fmt, ["tfjs-json", "blazepose33-json"])


def reference_track(clip: Clip, *, assets: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The (T, 17, 2) reference of ``clip``: its json, or the teacher model's per-frame track."""
    root = assets_dir(assets, check=False)
    if clip.reference.endswith("-json"):
        ref = load_reference_json(root / clip.reference_file, clip.reference)
        return ref[clip.start:clip.stop]
    if cache_dir is None:
        tr = run_model_track(clip.reference, root / clip.video, start=clip.start, stop=clip.stop)
    else:
        tr = cached_model_track(cache_dir, clip.reference, root / clip.video, start=clip.start,
                                stop=clip.stop)
    return tr.keypoints


def get_clip(name: str) -> Clip:
    if name not in EVAL_CLIPS:
        raise unknown_name("evaluation clip", name, EVAL_CLIPS)
    return EVAL_CLIPS[name]


def check_assets(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not (root / "data").is_dir():
        raise AssetsNotFoundError(f"assets folder not found at {root} (no data/ in it); pass --assets "
                                  f"or set {ASSETS_ENV}")
    return root
