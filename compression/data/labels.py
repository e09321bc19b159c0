"""Teacher pseudo-labels: person crops + the teacher's keypoints and raw head maps, cached once.

For each frame of the training media a person detector (MoveNet MultiPose Lightning, Apache-2.0)
finds people; each person's square crop (1.25 x the box, the evaluation protocol's crop) goes
through the teacher (MoveNet Thunder) with its head tensors exposed as extra ONNX outputs. The
crop (JPEG), the teacher's keypoints and its heatmap + centre maps (uint8) are written to one
``.npz`` whose name is a content hash of the media files, the models and the config, so a second
run with the same inputs loads it instead of labelling again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgepose.models._crop import Roi, apply_affine, crop, invert_affine

from .sources import MediaItem, iter_frames
from edgepose.errors import ConfigError, MissingFileError
from edgepose._hash import sha256_file as _file_sha

log = logging.getLogger(__name__)

#: Bumped when the cache layout changes.
CACHE_VERSION = 1


@dataclass(frozen=True)
class LabelConfig:
    """How to pseudo-label training media.

    Attributes:
        teacher: path of the teacher ONNX (MoveNet Thunder fp32: the most accurate model here).
        detector: path of the MoveNet MultiPose ONNX used to find people; None = one person per
            frame, cropped from the whole frame (for folders of single-person crops).
        video_stride: label every n-th video frame (neighbouring frames are near-duplicates).
        max_frames_per_video: cap per video so long clips do not dominate the set.
        max_people: at most this many people per frame (highest detector scores first).
        min_person_score: detector score a person needs (MultiPose's own default is 0.2-0.3).
        min_teacher_score: mean teacher keypoint score a crop needs to be kept (drops crops the
            teacher cannot read: back views in the dark, false detections).
        crop_scale: crop side = this x the box's longer side (the evaluation protocol uses 1.25).
        jpeg_quality: quality of the cached crops (95: no visible loss, ~4x smaller than raw).
    """

    teacher: str
    detector: str | None = None
    video_stride: int = 10
    max_frames_per_video: int = 40
    max_people: int = 3
    min_person_score: float = 0.3
    min_teacher_score: float = 0.3
    crop_scale: float = 1.25
    jpeg_quality: int = 95
    version: int = CACHE_VERSION

    def __post_init__(self):
        for f in ("video_stride", "max_frames_per_video", "max_people"):
            if getattr(self, f) < 1:
                raise ConfigError(f"LabelConfig.{f} must be >= 1, got {getattr(self, f)!r}")
        if not 1.0 <= self.crop_scale <= 3.0:
            raise ConfigError(f"LabelConfig.crop_scale must be in [1, 3], got {self.crop_scale!r}")
        if not os.path.isfile(self.teacher):
            raise MissingFileError(f"teacher model not found: {self.teacher!r}; pass the MoveNet "
                                    "Thunder ONNX, e.g. $EDGEPOSE_ASSETS/models/movenet/movenet_thunder_fp32.onnx")
        if self.detector is not None and not os.path.isfile(self.detector):
            raise MissingFileError(f"detector model not found: {self.detector!r}; pass "
                                    "movenet_multipose_lightning_fp32.onnx or detector=None")


@dataclass
class LabelSet:
    """Cached pseudo-labels. Arrays are indexed by crop.

    Attributes:
        jpeg: concatenated JPEG bytes of the teacher-size crops; ``offsets`` (N + 1) delimit them.
        keypoints: (N, 17, 3) teacher (y, x, score), normalised to the crop.
        maps: (N, 18, h, w) uint8 teacher heatmaps (17) + centre map, value / 255 = probability.
        sources: per crop ``"file#frame"``.
        crop_size: the teacher's input side.
        path: the cache file.
    """

    jpeg: np.ndarray
    offsets: np.ndarray
    keypoints: np.ndarray
    maps: np.ndarray
    sources: list[str]
    crop_size: int
    path: str = ""

    def __len__(self) -> int:
        return len(self.keypoints)

    def image(self, i: int) -> np.ndarray:
        """Crop ``i`` as RGB uint8."""
        import cv2

        buf = self.jpeg[self.offsets[i]:self.offsets[i + 1]]
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Train / validation indices, grouped by source file so no clip is in both."""
        files = sorted({s.split("#")[0] for s in self.sources})
        rng = np.random.default_rng(seed)
        val_files = set(rng.permutation(files)[: max(1, int(round(len(files) * val_fraction)))])
        is_val = np.array([s.split("#")[0] in val_files for s in self.sources])
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class OnnxTeacher:
    """MoveNet ONNX run with its raw head tensors as extra outputs (exact, no torch needed)."""

    def __init__(self, path: str, *, num_threads: int | None = None):
        import onnx
        import onnxruntime as ort

        from ..importer import import_movenet

        net = import_movenet(path)  # finds the head tensors and their order
        self.input_size = net.input_size
        self.sha256 = net.source_sha256
        model = onnx.load(path)
        names = {o.name for o in model.graph.output}
        for t in net.body.head_tensors:
            if t not in names:
                model.graph.output.add().name = t
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if num_threads:
            opts.intra_op_num_threads = num_threads
        self._sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        self._in = self._sess.get_inputs()[0].name
        self._outs = [model.graph.output[0].name, *net.body.head_tensors]

    def __call__(self, crop_rgb: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(H, W, 3) uint8 crop -> ((17, 3) keypoints, [heatmap, center, regress, offset] (C, h, w))."""
        res = self._sess.run(self._outs, {self._in: crop_rgb[None].astype(np.int32)})
        return res[0].reshape(17, 3), [r[0] for r in res[1:]]


class PersonDetector:
    """People boxes from MoveNet MultiPose (``[1, 6, 56]``: 17 x (y, x, s), box, score)."""

    def __init__(self, path: str, *, num_threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if num_threads:
            opts.intra_op_num_threads = num_threads
        self._sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = self._sess.get_inputs()[0]
        self._in, self.size = inp.name, int(inp.shape[1])

    def __call__(self, frame: np.ndarray) -> list[tuple[float, tuple[float, float, float, float]]]:
        """``[(score, (x0, y0, x1, y1) frame px)]``, best first."""
        h, w = frame.shape[:2]
        img, m = crop(frame, Roi.full_frame(w, h), self.size, self.size)
        out = self._sess.run(None, {self._in: img[None].astype(np.int32)})[0].reshape(-1, 56)
        back = invert_affine(m)
        dets = []
        for row in out:
            ymin, xmin, ymax, xmax, score = row[51:56]
            p = apply_affine(back, np.array([[xmin, ymin], [xmax, ymax]]) * self.size)
            dets.append((float(score), (p[0, 0], p[0, 1], p[1, 0], p[1, 1])))
        return sorted(dets, key=lambda d: -d[0])


def cache_key(items: list[MediaItem], cfg: LabelConfig) -> str:
    """Content hash of the media (bytes + frame ranges), the models and the config."""
    h = hashlib.sha256()
    conf = asdict(cfg)
    conf["teacher"] = _file_sha(cfg.teacher)
    conf["detector"] = _file_sha(cfg.detector) if cfg.detector else None
    h.update(json.dumps(conf, sort_keys=True).encode())
    for it in sorted(items, key=lambda i: (i.path, i.start)):
        h.update(f"{_file_sha(it.path)}:{it.kind}:{it.start}:{it.stop}{':crop' if it.crop else ''}\n".encode())
    return h.hexdigest()


def _video_stride(item: MediaItem, cfg: LabelConfig) -> int:
    import cv2

    cap = cv2.VideoCapture(item.path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    stop = n if item.stop is None else min(n, item.stop)
    return max(cfg.video_stride, (stop - item.start) // cfg.max_frames_per_video + 1)


def label_media(items: list[MediaItem], cfg: LabelConfig, cache_dir: str | os.PathLike, *,
                progress: bool = True, num_threads: int | None = None) -> LabelSet:
    """Pseudo-label ``items`` with the teacher, or load the cached result.

    Args:
        items: from :func:`scan_media` / :func:`training_sources`.
        cfg: labelling options.
        cache_dir: folder for the cache (keep it out of git, e.g. ``runs/cache``).
        progress: show a tqdm bar.
        num_threads: ONNX Runtime threads.
    """
    import cv2
    from tqdm import tqdm

    key = cache_key(items, cfg)
    path = Path(cache_dir) / f"labels-{key[:20]}.npz"
    if path.is_file():
        log.info("loading cached pseudo-labels %s", path)
        return load_labels(path)
    teacher = OnnxTeacher(cfg.teacher, num_threads=num_threads)
    detector = PersonDetector(cfg.detector, num_threads=num_threads) if cfg.detector else None
    size = teacher.input_size[0]
    jpegs, kps, maps, srcs = [], [], [], []
    for item in tqdm(items, desc="pseudo-labelling", unit="file", disable=not progress):
        stride = _video_stride(item, cfg) if item.kind == "video" else 1
        for fi, frame in iter_frames(item, stride=stride):
            h, w = frame.shape[:2]
            if detector is None or item.crop:  # a pool crop is one person already
                rois = [Roi.full_frame(w, h)]
            else:
                rois = [Roi.from_box(*box, scale=cfg.crop_scale) for s, box in detector(frame)
                        if s >= cfg.min_person_score][: cfg.max_people]
            for roi in rois:
                img, _ = crop(frame, roi, size, size)
                k, heads = teacher(img)
                if float(k[:, 2].mean()) < cfg.min_teacher_score:
                    continue
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
                jpegs.append(buf.reshape(-1))
                kps.append(k.astype(np.float32))
                m = np.concatenate([heads[0], heads[1]], axis=0)
                maps.append(np.clip(np.rint(m * 255.0), 0, 255).astype(np.uint8))
                srcs.append(f"{item.path}#{fi}")
    if not kps:
        raise ConfigError(f"the teacher kept no person crop from {len(items)} files: lower "
                         "min_person_score / min_teacher_score or check the data folder")
    offsets = np.concatenate([[0], np.cumsum([len(j) for j in jpegs])]).astype(np.int64)
    labels = LabelSet(np.concatenate(jpegs), offsets, np.stack(kps), np.stack(maps), srcs, size, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, jpeg=labels.jpeg, offsets=offsets, keypoints=labels.keypoints, maps=labels.maps,
             sources=np.array(srcs), crop_size=np.array(size),
             meta=np.array(json.dumps({"key": key, "config": asdict(cfg), "files": len(items)})))
    os.replace(tmp, path)
    log.info("pseudo-labelled %d crops from %d files -> %s", len(labels), len(items), path)
    return labels


def load_labels(path: str | os.PathLike) -> LabelSet:
    """Load a cache written by :func:`label_media`."""
    with np.load(path, allow_pickle=False) as z:
        return LabelSet(z["jpeg"], z["offsets"], z["keypoints"], z["maps"], [str(s) for s in z["sources"]],
                        int(z["crop_size"]), os.fspath(path))
