"""Training DKD for video: consecutive-frame teacher labels, the losses, and ``train_dkd``.

* :func:`collect_clips` follows people through training videos the way the runtime does: the crop
  of stored frame j comes from the teacher's pose on stored frame j-1 (a detector starts each
  segment and restarts a lost track), and the teacher (MoveNet Thunder) labels every crop with
  its heatmaps. Segments use frame gaps of 1, 2 and 4 so motion ranges from 50 fps studio clips
  to 5 fps footage. Cached as ``.npz`` by content hash.
* :func:`dkd_losses`: heatmap KD on every frame of a clip plus a **temporal consistency** term,
  the peak-weighted MSE between the student's frame-to-frame heatmap change and the teacher's
  (a student that is right on average but jitters, or lags a moving joint, pays for it). The
  paper's adversarial pose discriminator is not built.
* :func:`pretrain_frames`: trains the encoder + per-frame head on still teacher-labelled crops
  (:class:`~edgepose.compression.data.labels.LabelSet`) first, the usual DKD recipe (the
  distillator then only has to learn to adapt an already useful head).
* :func:`train_dkd`: rolls :class:`~edgepose.compression.students.dkd_model.DKDPose` over clips
  (frame 0 a keyframe, the next frames through the pose kernels); ``per_frame=True`` trains
  the same network as a plain per-frame student on the same clips (the ablation's baseline).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .._train import fill_report
from ..train import LossModule
from ..data.augment import AugmentConfig, augment
from .distill import DistillReport
from .vitkd import heatmap_kd, output_kd
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


# -- consecutive-frame teacher labels -------------------------------------------------------------------
@dataclass(frozen=True)
class ClipConfig:
    """How :func:`collect_clips` samples training videos.

    Attributes:
        teacher: MoveNet Thunder ONNX (the label source).
        detector: MoveNet MultiPose ONNX (starts segments, restarts lost tracks).
        gaps: frame gaps of successive segments, cycled (1 / 2 / 4: 50 fps to ~10 fps motion).
        segment: stored frames per segment (clips are drawn inside a segment).
        max_segments: segments per video at most (spread over its frame range).
        store_size: side of the stored crops (the student input: keeps the cache small).
        min_teacher_score: mean teacher keypoint score a frame needs; below it the segment ends.
        jpeg_quality: quality of the stored crops.
    """

    teacher: str
    detector: str
    gaps: tuple[int, ...] = (1, 2, 4)
    segment: int = 12
    max_segments: int = 6
    store_size: int = 128
    min_teacher_score: float = 0.3
    jpeg_quality: int = 95
    version: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClipSet:
    """Stored tracked crops: ``images`` (N, S, S, 3) uint8, ``maps`` (N, 17, S/4, S/4) uint8 teacher
    heatmaps, ``keypoints`` (N, 17, 3) teacher (y, x, score) in the crop, ``segment`` (N,) id."""

    images: np.ndarray
    maps: np.ndarray
    keypoints: np.ndarray
    segment: np.ndarray
    sources: list[str]

    def clip_starts(self, length: int) -> np.ndarray:
        """Indices i such that i .. i + length - 1 lie in one segment."""
        seg = self.segment
        ok = [i for i in range(len(seg) - length + 1) if seg[i] == seg[i + length - 1]]
        return np.asarray(ok, dtype=np.int64)


def collect_clips(videos: list[tuple[str, int, int | None]], cfg: ClipConfig, cache_dir: str | os.PathLike, *,
                  num_threads: int = 1, progress: bool = True) -> ClipSet:
    """Teacher-labelled tracked crops of ``videos`` ((path, start, stop) frame ranges), cached.

    Raises:
        ValueError: a path is in the evaluation set, or no frame was kept.
    """
    import cv2
    from tqdm import tqdm

    from edgepose.models._crop import Roi, apply_affine, crop, invert_affine
    from edgepose.models.roi import roi_from_keypoints

    from ..data.labels import OnnxTeacher, PersonDetector, _file_sha
    from ..data.sources import _is_eval_path

    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for p, a, b in videos:
        if _is_eval_path(Path(p)):
            raise ConfigError(f"{p!r} is in the evaluation set; never train on it")
        h.update(f"{_file_sha(p)}:{a}:{b}\n".encode())
    h.update(_file_sha(cfg.teacher).encode())
    path = Path(cache_dir) / f"dkd-clips-{h.hexdigest()[:20]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return ClipSet(z["images"], z["maps"], z["keypoints"], z["segment"], [str(s) for s in z["sources"]])
    teacher, det = OnnxTeacher(cfg.teacher, num_threads=num_threads), PersonDetector(cfg.detector, num_threads=num_threads)
    ts = teacher.input_size[0]
    imgs, maps, kps, segs, srcs = [], [], [], [], []
    seg_id = 0
    for vi, (vpath, start, stop) in enumerate(tqdm(videos, desc="teacher clips", disable=not progress)):
        cap = cv2.VideoCapture(vpath)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        n = min(n, stop) if stop is not None else n
        plan = []  # (gap, frame indices) per segment, spread over the range
        for si in range(cfg.max_segments):
            gap = cfg.gaps[(vi + si) % len(cfg.gaps)]
            room = n - start - (gap * (cfg.segment - 1) + 1)
            if room < 0:
                break
            first = start + (room * si) // max(1, cfg.max_segments - 1)
            plan.append(list(range(first, first + gap * cfg.segment, gap)))
        need, frames, idx = {i for seg in plan for i in seg}, {}, 0
        while need and idx <= max(need):
            if not cap.grab():
                break
            if idx in need:
                ok, f = cap.retrieve()
                if ok:
                    frames[idx] = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
            idx += 1
        cap.release()
        for seg in plan:
            roi = None
            for fi in seg:
                frame = frames.get(fi)
                if frame is None:
                    break
                if roi is None:
                    d = [b for s, b in det(frame) if s >= 0.3]
                    if not d:
                        break
                    roi = Roi.from_box(*d[0])
                img, m = crop(frame, roi, ts, ts)
                k, heads = teacher(img)
                if float(k[:, 2].mean()) < cfg.min_teacher_score:
                    break
                imgs.append(cv2.resize(img, (cfg.store_size, cfg.store_size), interpolation=cv2.INTER_AREA))
                ms = cfg.store_size // 4
                hm = cv2.resize(np.ascontiguousarray(heads[0].transpose(1, 2, 0)), (ms, ms), interpolation=cv2.INTER_AREA)
                maps.append(np.clip(np.rint(hm.transpose(2, 0, 1) * 255), 0, 255).astype(np.uint8))
                kps.append(k.astype(np.float32))
                segs.append(seg_id)
                srcs.append(f"{vpath}#{fi}")
                xy = apply_affine(invert_affine(m), k[:, [1, 0]] * ts)
                roi = roi_from_keypoints(xy, k[:, 2], (frame.shape[1], frame.shape[0]))
            seg_id += 1
    if not imgs:
        raise ConfigError(f"collect_clips kept no frame from {len(videos)} videos")
    clips = ClipSet(np.stack(imgs), np.stack(maps), np.stack(kps), np.asarray(segs, np.int64), srcs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, images=clips.images, maps=clips.maps, keypoints=clips.keypoints,
                        segment=clips.segment, sources=np.array(srcs), meta=np.array(json.dumps(cfg.to_dict())))
    os.replace(tmp, path)
    log.info("collected %d tracked teacher frames in %d segments -> %s", len(imgs), seg_id, path)
    return clips


class ClipDataset(Dataset):
    """Clips of ``length`` consecutive stored frames, every frame augmented identically.

    Items: ``{"clip": (L, 3, S, S) normalised, "maps": (L, 17, S/4, S/4)}``.
    """

    def __init__(self, clips: ClipSet, starts: np.ndarray, *, length: int, augment_cfg: AugmentConfig,
                 mean: float, std: float, seed: int = 0):
        self.clips, self.starts, self.length = clips, np.asarray(starts), int(length)
        self.cfg, self.mean, self.std, self.seed, self.epoch = augment_cfg, mean, std, seed, 0

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        size = self.clips.images.shape[1]
        xs, ms = [], []
        for t in range(self.length):  # same seed per frame -> same affine / flip / colour / cutout
            rng = np.random.default_rng((self.seed, self.epoch, s))
            img, _, m = augment(self.clips.images[s + t], self.clips.keypoints[s + t], self.clips.maps[s + t],
                                self.cfg, out_size=size, stride=4, rng=rng)
            xs.append((img.astype(np.float32) - self.mean) / self.std)
            ms.append(m)
        return {"clip": torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous(),
                "maps": torch.from_numpy(np.stack(ms))}


# -- losses -------------------------------------------------------------------------------------------
def temporal_consistency(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak-weighted MSE between frame-to-frame heatmap changes, x 100.

    Args:
        pred, target: (N, L, J, h, w) heatmaps of consecutive frames (L >= 2).
    """
    dp, dt = pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1]
    w = 1.0 + 10.0 * torch.maximum(target[:, 1:], target[:, :-1])
    return (w * (dp - dt) ** 2).mean() * 100.0


def dkd_losses(pred: torch.Tensor, target: torch.Tensor, *, w_temporal: float, w_kl: float = 1.0
               ) -> dict[str, torch.Tensor]:
    """Output KD on every frame (``heatmap_kd``, ``spatial_kl``) + ``temporal`` (if weighted).

    Args:
        pred, target: (N, L, J, h, w) clip heatmaps.
        w_temporal: weight of :func:`temporal_consistency`.
        w_kl: weight of the spatial-KL localisation term.
    """
    n, l = pred.shape[:2]
    out = output_kd(pred.flatten(0, 1), target.flatten(0, 1), w_kl=w_kl)
    if w_temporal and l > 1:
        out["temporal"] = w_temporal * temporal_consistency(pred, target)
    return out


# -- training -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DKDTrainConfig:
    """Options of :func:`train_dkd`.

    Attributes:
        steps: optimiser steps.
        batch_size: clips per step.
        clip_length: frames per clip (3: a keyframe and two kernel-propagated frames, so the
            kernels are trained on their own predictions, as at run time).
        lr: peak AdamW learning rate (a small CNN from scratch).
        weight_decay: AdamW weight decay.
        warmup: linear warm-up steps, then cosine decay.
        w_temporal: weight of the temporal consistency term (0 = off).
        w_spatial_kl: weight of the spatial-KL localisation term of output KD (both arms).
        per_frame: train the plain per-frame student instead (no kernels, each frame alone).
        val_fraction: share of segments held out for the validation loss.
        augment: augmentation ranges (shared by the frames of a clip).
        seed: init, data order and augmentation seed.
        threads: torch intra-op threads (None = leave torch's setting).
    """

    steps: int = 400
    batch_size: int = 6
    clip_length: int = 3
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    w_temporal: float = 1.0
    w_spatial_kl: float = 1.0
    per_frame: bool = False
    val_fraction: float = 0.1
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(rotate_deg=20.0))
    seed: int = 0
    threads: int | None = None
    version: int = 1

    def __post_init__(self):
        for f in ("steps", "batch_size"):
            if getattr(self, f) < 1:
                raise ConfigError(f"DKDTrainConfig.{f} must be >= 1, got {getattr(self, f)!r}")
        if self.clip_length < 2:
            raise ConfigError(f"DKDTrainConfig.clip_length must be >= 2, got {self.clip_length!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _predict(model, clip, per_frame: bool) -> torch.Tensor:
    if per_frame:
        n, l = clip.shape[:2]
        return model(clip.flatten(0, 1)).unflatten(0, (n, l))
    return model.forward_clip(clip)


class FramesLoss(LossModule):
    """Per-frame output KD of a :class:`DKDPose` (its encoder + plain head) on labelled crops."""

    def __init__(self, model, w_kl: float):
        super().__init__()
        self.model, self.w_kl = model, w_kl

    def forward(self, b) -> dict[str, torch.Tensor]:
        return output_kd(self.model(b["image"]), b["maps"][:, :17], w_kl=self.w_kl)


class DKDLoss(LossModule):
    """Clip-level DKD loss (output KD of every frame + temporal consistency), or per-frame KD."""

    def __init__(self, model, per_frame: bool, w_temporal: float, w_kl: float):
        super().__init__()
        self.model, self.per_frame, self.w_temporal, self.w_kl = model, per_frame, w_temporal, w_kl

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return dkd_losses(_predict(self.model, batch["clip"], self.per_frame), batch["maps"],
                          w_temporal=self.w_temporal, w_kl=self.w_kl)


def pretrain_frames(model, labels, *, steps: int = 800, batch_size: int = 16, lr: float = 2e-3,
                    w_spatial_kl: float = 1.0, augment_cfg: AugmentConfig = AugmentConfig(), seed: int = 0,
                    threads: int | None = None, progress: bool = True, device: str = "auto") -> DistillReport:
    """Per-frame pre-training of a :class:`DKDPose` (encoder + plain head) on teacher-labelled crops.

    Args:
        model: the model (trained in place, left in eval mode).
        labels: cached teacher labels (:func:`~edgepose.compression.data.labels.label_media`).
        steps, batch_size, lr: AdamW schedule (warm-up 5 %, cosine decay).
        w_spatial_kl: weight of the spatial-KL term of output KD.
        augment_cfg: augmentation ranges.
        seed: data order / augmentation seed.
        threads: torch intra-op threads.
        progress: show a tqdm bar.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.
    """
    from ..data.dataset import PseudoLabelDataset
    from ..students.vit import MEAN, STD

    from ..train import Trainer, TrainerConfig

    if threads:
        torch.set_num_threads(threads)
    size = model.cfg.input_size
    ds = PseudoLabelDataset(labels, np.arange(len(labels)), out_size=size, scale=np.full(3, 1.0 / STD),
                            shift=np.full(3, -MEAN / STD), augment_cfg=augment_cfg, seed=seed)
    tcfg = TrainerConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=1e-4, warmup=max(1, steps // 20),
                         grad_clip=5.0, seed=seed * 7919, channels_last=False, device=device, progress=progress,
                         desc="pretrain")
    rep = DistillReport(n_train=len(ds))
    t0 = time.perf_counter()
    fill_report(rep, Trainer(FramesLoss(model, w_spatial_kl), ds, tcfg).fit().history)
    model.eval()
    rep.seconds = time.perf_counter() - t0
    return rep


def train_dkd(model, clips: ClipSet, cfg: DKDTrainConfig = DKDTrainConfig(), *, progress: bool = True,
              device: str = "auto") -> DistillReport:
    """Train a :class:`DKDPose` (or, with ``cfg.per_frame``, its plain per-frame student) on clips.

    Returns:
        The loss-curve report (validation = heatmap KD over held-out segments, rolled out the way
        the model is trained); ``model`` is left in eval mode. ``device``: auto / cpu / cuda / mps.
    """
    from ..students.vit import MEAN, STD

    from ..train import Trainer, TrainerConfig

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    starts = clips.clip_starts(cfg.clip_length)
    segs = np.unique(clips.segment)
    val_segs = set(np.random.default_rng(0).permutation(segs)[: max(1, int(len(segs) * cfg.val_fraction))])
    is_val = np.array([clips.segment[s] in val_segs for s in starts])
    kw = dict(length=cfg.clip_length, mean=MEAN, std=STD)
    train_ds = ClipDataset(clips, starts[~is_val], augment_cfg=cfg.augment, seed=cfg.seed, **kw)
    val_ds = ClipDataset(clips, starts[is_val][::3], augment_cfg=AugmentConfig.none(), **kw)
    w_t = 0.0 if cfg.per_frame else cfg.w_temporal
    tcfg = TrainerConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         warmup=cfg.warmup, grad_clip=5.0, seed=cfg.seed * 7919, channels_last=False, device=device,
                         progress=progress, desc="per-frame" if cfg.per_frame else "dkd")
    rep = DistillReport(n_train=len(train_ds), n_val=len(val_ds))
    t0 = time.perf_counter()
    res = Trainer(DKDLoss(model, cfg.per_frame, w_t, cfg.w_spatial_kl), train_ds, tcfg).fit()
    fill_report(rep, res.history)
    step = res.steps
    model.eval()
    with torch.no_grad():
        vals = [float(heatmap_kd(_predict(model, b["clip"], cfg.per_frame), b["maps"]))
                for b in DataLoader(val_ds, batch_size=16)]
    rep.val_steps, rep.val = [step], [float(np.mean(vals)) if vals else float("nan")]
    rep.seconds = time.perf_counter() - t0
    log.info("%s: %d steps, val heatmap KD %.4f (%.0f s)", "per-frame" if cfg.per_frame else "dkd",
             step, rep.val[0], rep.seconds)
    return rep
