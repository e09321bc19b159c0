"""Scene specialisation: teach the deployed student the one scene its camera sees.

:func:`adapt` takes the user's own footage of the scene (videos with frame ranges, or a folder of
person crops collected by the offload server), splits it **in time** into a training segment and a
later gate segment, lets the teacher (MoveNet Thunder) label the person crops of both
(:func:`~edgepose.compression.data.labels.label_media`, cached), fine-tunes the student (MoveNet
Lightning fp32 imported to torch, or a pruned copy) on the training segment through the one
:class:`~edgepose.compression.train.Trainer` (heatmap KD + task loss, :class:`DistillLoss`),
exports it to ONNX, quantises it to int8 (ORT static QDQ, calibrated on the scene's training
crops) and writes the scene and frames it learned from into the model's metadata.

The accuracy gate scores the candidate int8 and the current model on the gate segment (frames
after every training frame) against the teacher (PCK@0.2 torso, :mod:`.scoring`) and accepts
the candidate only with enough evidence that it is not worse (:mod:`.gate`: at least
``gate_min_crops`` gate crops, no higher disagreement than the current model's plus
``gate_margin``, and worse in at most ``gate_max_risk`` of a paired bootstrap over the gate frames).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgepose.errors import ConfigError, MissingFileError

from ..data.sources import MediaItem, scan_media
from .scoring import Agreement, CropModel, agreement_of, predict

log = logging.getLogger(__name__)

STUDENTS = ("lightning", "pruned")
#: Training augmentation of the scene's crops: ``light`` (default) stays close to the scene the
#: camera sees; ``full`` is the generic training recipe's (:class:`AugmentConfig` defaults); ``none``.
AUGMENTS = ("light", "full", "none")


@dataclass(frozen=True)
class AdaptConfig:
    """Options of :func:`adapt`.

    Attributes:
        student: ``lightning`` (the deployed model's architecture, same latency) or ``pruned``
            (channels pruned to ``target_macs`` of Lightning's MACs first).
        target_macs: MACs kept by the pruned student.
        steps / batch_size / lr / warmup: fine-tuning schedule. The lr is small: the weights start
            trained, and AdamW's first steps move every weight by ~lr (measured on vtest: 1e-4
            dropped the fp32 student from 93 to 73 PCK vs the teacher in 5 steps; 2e-5 gained 1.2
            points in 20 steps).
        w_kd / w_task / w_ref: teacher-map KD, pseudo-label task loss, online KD from the frozen
            generic model (0 = off). On by default: on the three scenes where plain fine-tuning
            was refused or worse (scene_adapt, 30 steps) it moved the candidate's disagreement on
            the evaluation frames 21.7 -> 9.4, 5.2 -> 3.3, 13.1 -> 11.1 (a regulariser for clips
            of a few dozen crops).
        gate_fraction: the last share of each source's frames held out for the gate.
        gate_margin: PCK points the candidate may be worse than the current model and still pass (0:
            it must agree better; a tie is no measured gain).
        gate_min_crops / gate_max_risk / gate_resamples: the gate's evidence (:mod:`.gate`):
            refuse with fewer gate crops than this, or when the candidate is worse in more than
            this share of the paired bootstrap resamples of the gate frames.
        label_stride / max_frames / max_people: labelling of the training segment (every n-th
            frame, at most this many frames per source, people per frame; long clips are
            strided further to fit ``max_frames``: stride 1 only densifies short clips).
        min_person_score: detector score a person box needs (low: the teacher's own score filter
            drops false boxes; MultiPose scores small distant walkers 0.1-0.3).
        gate_stride / gate_max_frames: labelling of the gate segment.
        num_calibration: int8 calibration crops (from the training segment).
        float_stem: the first n body convolutions kept float in the int8 export (0: full int8;
            the stem conv and the first depthwise are the most int8-sensitive layers of
            Lightning, research notes C1).
        augment: :data:`AUGMENTS`. ``light`` (flips, +-10 % zoom, +-10 deg, small shifts and
            colour, no cutout): one camera's crops need little of the generic recipe's variety.
            Measured (30 / 150 steps, candidate int8 disagreement on the evaluation frames, full
            -> light): sam2_bedroom 5.44 -> 3.86 / 3.86 -> 2.76, sports2d 11.31 -> 8.79, one_by_one
            3.53 -> 3.01 / 1.83 -> 2.09, vtest 7.02 -> 7.66 / 5.71 -> 5.75 (research notes A1).
        seed / threads: reproducibility and torch / ORT threads.
    """

    student: str = "lightning"
    target_macs: float = 0.5
    steps: int = 150
    batch_size: int = 16
    lr: float = 5e-5
    warmup: int = 10
    w_kd: float = 1.0
    w_task: float = 1.0
    w_ref: float = 1.0
    gate_fraction: float = 0.2
    gate_margin: float = 0.0
    gate_min_crops: int = 30
    gate_max_risk: float = 0.25
    gate_resamples: int = 2000
    label_stride: int = 1
    max_frames: int = 150
    max_people: int = 5
    min_person_score: float = 0.1
    gate_stride: int = 1
    gate_max_frames: int = 100
    num_calibration: int = 64
    float_stem: int = 0
    augment: str = "light"
    seed: int = 0
    threads: int = 2
    version: int = 3

    def __post_init__(self):
        if self.student not in STUDENTS:
            raise ConfigError(f"AdaptConfig.student must be one of {', '.join(STUDENTS)}, got {self.student!r}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"AdaptConfig.augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if not 0.05 <= self.target_macs < 1.0:
            raise ConfigError(f"AdaptConfig.target_macs must be in [0.05, 1), got {self.target_macs!r}")
        if not 0.05 <= self.gate_fraction <= 0.5:
            raise ConfigError(f"AdaptConfig.gate_fraction must be in [0.05, 0.5], got {self.gate_fraction!r}")
        for f in ("steps", "batch_size", "label_stride", "max_frames", "max_people", "gate_stride",
                  "gate_max_frames", "num_calibration", "threads", "gate_resamples"):
            if getattr(self, f) < 1:
                raise ConfigError(f"AdaptConfig.{f} must be >= 1, got {getattr(self, f)!r}")
        if not 0.0 <= self.min_person_score < 1.0:
            raise ConfigError(f"AdaptConfig.min_person_score must be in [0, 1), got {self.min_person_score!r}")
        if not self.lr > 0:
            raise ConfigError(f"AdaptConfig.lr must be > 0, got {self.lr!r}")
        for f in ("w_kd", "w_task", "w_ref", "gate_margin", "gate_min_crops", "float_stem"):
            if not getattr(self, f) >= 0:
                raise ConfigError(f"AdaptConfig.{f} must be >= 0, got {getattr(self, f)!r}")
        if not 0.0 <= self.gate_max_risk <= 1.0:
            raise ConfigError(f"AdaptConfig.gate_max_risk must be in [0, 1], got {self.gate_max_risk!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AdaptResult:
    """What :func:`adapt` did; ``accepted`` is the gate's verdict."""

    scene: dict
    config: dict
    accepted: bool
    gate: dict
    candidate_int8: str
    candidate_fp32: str
    adapted: str | None
    current: str
    crops: dict
    training: dict
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def frame_count(path: str) -> int:
    import cv2

    cap = cv2.VideoCapture(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    return n


def split_in_time(items: list[MediaItem], gate_fraction: float) -> tuple[list[MediaItem], list[MediaItem]]:
    """(training, gate) segments: the last ``gate_fraction`` of each video's frame range, and the
    last ``gate_fraction`` of the images in name order (a collection's names are its time order)."""
    train, gate = [], []
    for it in items:
        if it.kind != "video":
            continue
        n = frame_count(it.path)
        stop = n if it.stop is None else min(it.stop, n)
        if stop - it.start < 10:
            raise ConfigError(f"{it.path!r} frames [{it.start}, {stop}) hold {max(stop - it.start, 0)} frames; "
                              "scene adaptation needs at least 10 (check the --frames range)")
        cut = it.start + int(round((stop - it.start) * (1.0 - gate_fraction)))
        train.append(MediaItem(it.path, "video", it.start, cut))
        gate.append(MediaItem(it.path, "video", cut, stop))
    images = sorted((it for it in items if it.kind == "image"), key=lambda i: i.path)
    if images:
        if len(images) < 10:
            raise ConfigError(f"{len(images)} images: scene adaptation needs at least 10 crops")
        cut = int(round(len(images) * (1.0 - gate_fraction)))
        train += images[:cut]
        gate += images[cut:]
    return train, gate


def collection_items(folder: str | os.PathLike) -> list[MediaItem]:
    """The person crops of a server collection (``edgepose serve --collect DIR``), in time order."""
    p = Path(folder)
    if not p.is_dir():
        raise MissingFileError(f"collection folder not found: {os.fspath(folder)!r}; pass the --collect DIR "
                               "of `edgepose serve`")
    try:
        items = scan_media(p / "crops" if (p / "crops").is_dir() else p)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return sorted((i for i in items if i.kind == "image"), key=lambda i: i.path)


def _sha(path: str | os.PathLike, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def scene_record(name: str, train: list[MediaItem], gate: list[MediaItem]) -> dict:
    """What the model's metadata says it learned from (files by name and content hash, frame ranges)."""
    def rows(items):
        vids = [{"file": os.path.basename(i.path), "sha256_16": _sha(i.path), "frames": [i.start, i.stop]}
                for i in items if i.kind == "video"]
        imgs = [i for i in items if i.kind == "image"]
        if imgs:
            vids.append({"images": len(imgs), "first": os.path.basename(imgs[0].path),
                         "last": os.path.basename(imgs[-1].path)})
        return vids

    return {"name": name, "train": rows(train), "gate": rows(gate)}


def label_segment(items: list[MediaItem], *, teacher: str, detector: str | None, stride: int, max_frames: int,
                  max_people: int, cache_dir, min_person_score: float = 0.1, progress: bool = True,
                  threads: int | None = None):
    """Teacher labels of one segment (cached): person crops found by ``detector`` (None: every
    image is already one person crop, as in a server collection)."""
    from ..data.labels import LabelConfig, label_media

    if not items:
        raise ConfigError("no frames in this segment")
    det = detector if any(i.kind == "video" for i in items) else None
    cfg = LabelConfig(teacher=teacher, detector=det, video_stride=stride, max_frames_per_video=max_frames,
                      max_people=max_people, min_person_score=min_person_score)
    try:
        return label_media(items, cfg, cache_dir, progress=progress, num_threads=threads)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def make_student(base_fp32: str, cfg: AdaptConfig, labels=None):
    """``(student, generic)``: the torch student to fine-tune and the frozen generic model."""
    import copy

    from ..importer import import_movenet

    generic = import_movenet(base_fp32)
    if cfg.student == "lightning":
        return copy.deepcopy(generic), generic
    from torch.utils.data import DataLoader

    from ..data.augment import AugmentConfig
    from ..data.dataset import PseudoLabelDataset
    from ..prune import PruneConfig, prune

    batches = None
    if labels is not None:
        idx = np.linspace(0, len(labels) - 1, num=min(64, len(labels))).round().astype(int)
        ds = PseudoLabelDataset(labels, idx, out_size=generic.input_size[0], scale=generic.scale.flatten().numpy(),
                                shift=generic.shift.flatten().numpy(), augment_cfg=AugmentConfig.none())
        batches = list(DataLoader(ds, batch_size=16))
    pcfg = PruneConfig(importance="content" if batches else "magnitude", target_macs=cfg.target_macs)
    return prune(generic, pcfg, batches=batches).model, generic


def scene_augment(name: str):
    """The :class:`AugmentConfig` of an :data:`AUGMENTS` name."""
    from ..data.augment import AugmentConfig

    if name == "full":
        return AugmentConfig()
    if name == "none":
        return AugmentConfig.none()
    if name == "light":
        return AugmentConfig(scale=(0.9, 1.1), rotate_deg=10.0, translate=0.05, flip=0.5, colour=0.15, blur=0.1,
                             cutout=0.0)
    raise ConfigError(f"augment must be one of {', '.join(AUGMENTS)}, got {name!r}")


def finetune(student, labels, cfg: AdaptConfig, *, reference=None, out=None, progress: bool = True) -> dict:
    """Fine-tune ``student`` in place on every crop of ``labels`` (the training segment) through
    the Trainer; returns the trainer summary."""
    import torch

    from ..data.dataset import PseudoLabelDataset
    from ..distill.distill import DistillConfig, DistillLoss
    from ..train import Trainer, TrainerConfig

    torch.manual_seed(cfg.seed)
    if len(labels) < 2:
        raise ConfigError(f"the teacher kept {len(labels)} person crop(s) in the training segment: too few to "
                          "learn from; give more frames or a scene with people in view")
    size = student.input_size[0]
    batch = min(cfg.batch_size, len(labels))
    ds = PseudoLabelDataset(labels, np.arange(len(labels)), out_size=size, scale=student.scale.flatten().numpy(),
                            shift=student.shift.flatten().numpy(), augment_cfg=scene_augment(cfg.augment),
                            seed=cfg.seed)
    dcfg = DistillConfig(steps=cfg.steps, batch_size=batch, lr=cfg.lr, w_kd=cfg.w_kd, w_task=cfg.w_task,
                         w_ref=cfg.w_ref, seed=cfg.seed)
    module = DistillLoss(student, dcfg, reference if cfg.w_ref else None)
    tcfg = TrainerConfig(steps=cfg.steps, batch_size=batch, lr=cfg.lr, weight_decay=1e-4,
                         warmup=min(cfg.warmup, cfg.steps // 2), grad_clip=5.0, seed=cfg.seed, channels_last=False,
                         device="cpu", threads=cfg.threads, progress=progress, desc="adapt")
    res = Trainer(module, ds, tcfg, params=[p for p in student.parameters() if p.requires_grad], out=out,
                  save_module=student).fit()
    student.eval()
    s = res.summary()
    hist = [h["loss"] for h in res.history]
    k = max(1, len(hist) // 10)
    return {"steps": s["steps"], "seconds": s["seconds"], "samples_per_s": s["samples_per_s"],
            "loss_first": float(np.mean(hist[:k])) if hist else None,
            "loss_last": float(np.mean(hist[-k:])) if hist else None, "n_crops": len(ds)}


def quantize_scene(fp32, int8, crops, *, num_calibration: int = 64, float_stem: int = 0) -> Path:
    """``fp32`` -> ``int8`` (ORT static QDQ calibrated on ``crops``), the first ``float_stem`` body
    convolutions (graph order) kept float."""
    from ..quantize import QuantizeConfig, quantize
    from ..quantize.sensitivity import conv_nodes

    excl = tuple(conv_nodes(os.fspath(fp32))[:float_stem]) if float_stem else ()
    quantize(fp32, int8, QuantizeConfig(num_calibration=num_calibration, exclude_nodes=excl), calibration=crops)
    return Path(int8)


def export_int8(student, labels, out_dir: Path, scene: dict, cfg: AdaptConfig, *, stem: str = "candidate") -> tuple[Path, Path]:
    """Export ``student`` to ``<stem>_fp32.onnx`` and ``<stem>_int8.onnx`` (ORT static QDQ, calibrated
    on the training segment's crops), both with ``edgepose.scene`` metadata."""
    import onnx

    from ..data.dataset import calibration_crops
    from ..export import ExportConfig, export_onnx
    from ..export.onnx_export import set_metadata

    size = student.input_size[0]
    crops = calibration_crops(labels, cfg.num_calibration, out_size=size, seed=cfg.seed)
    fp32, int8 = out_dir / f"{stem}_fp32.onnx", out_dir / f"{stem}_int8.onnx"
    export_onnx(student, fp32, ExportConfig(), compression={"adapt": cfg.to_dict()}, check_crops=crops[:4])
    quantize_scene(fp32, int8, crops, num_calibration=cfg.num_calibration, float_stem=cfg.float_stem)
    for p in (fp32, int8):
        m = onnx.load(os.fspath(p))
        meta = {q.key: q.value for q in m.metadata_props}
        meta["edgepose.scene"] = json.dumps(scene, sort_keys=True)
        set_metadata(m, meta)
        onnx.save(m, os.fspath(p))
    return fp32, int8


def gate_verdict(candidate: Agreement, current: Agreement, margin: float) -> bool:
    """The point comparison alone: the candidate disagrees with the teacher no more than the
    current model (+ margin), and less with no margin (a tie is no gain). :func:`adapt` also asks
    for evidence (:func:`.gate.decide`)."""
    if not (np.isfinite(candidate.disagreement) and np.isfinite(current.disagreement)):
        return False
    if margin == 0:
        return bool(candidate.disagreement < current.disagreement)
    return bool(candidate.disagreement <= current.disagreement + margin)


def adapt(items: list[MediaItem], out_dir: str | os.PathLike, cfg: AdaptConfig = AdaptConfig(), *,
          teacher: str, detector: str | None, base_fp32: str, current: str, cache_dir: str | os.PathLike,
          scene_name: str = "scene", progress: bool = True) -> AdaptResult:
    """Specialise a student to the scene of ``items`` (see the module docstring).

    Args:
        items: the scene's videos (with frame ranges) and / or collected person crops.
        out_dir: where the candidate models and the report go.
        cfg: options.
        teacher / detector: MoveNet Thunder and MultiPose ONNX files.
        base_fp32: the fp32 ONNX the student starts from (MoveNet Lightning).
        current: the deployed model the gate compares against (e.g. the shipped int8 Lightning).
        cache_dir: label cache folder.
        scene_name: written into the metadata and the report.

    Returns:
        :class:`AdaptResult`; ``out_dir/adapted_int8.onnx`` exists only when the gate accepts.
    """
    import torch

    for f, what in ((teacher, "teacher"), (base_fp32, "student base model"), (current, "current model")):
        if not os.path.isfile(f):
            raise MissingFileError(f"{what} not found: {f!r}")
    torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = {"start": time.perf_counter()}
    train_items, gate_items = split_in_time(items, cfg.gate_fraction)
    kw = dict(teacher=teacher, detector=detector, max_people=cfg.max_people, cache_dir=cache_dir,
              min_person_score=cfg.min_person_score, progress=progress, threads=cfg.threads)
    train_labels = label_segment(train_items, stride=cfg.label_stride, max_frames=cfg.max_frames, **kw)
    gate_labels = label_segment(gate_items, stride=cfg.gate_stride, max_frames=cfg.gate_max_frames, **kw)
    t["labelled"] = time.perf_counter()
    student, generic = make_student(base_fp32, cfg, train_labels)
    training = finetune(student, train_labels, cfg, reference=generic, out=out / "train", progress=progress)
    t["trained"] = time.perf_counter()
    scene = scene_record(scene_name, train_items, gate_items)
    scene.update(student=cfg.student, base=os.path.basename(base_fp32), teacher=os.path.basename(teacher))
    fp32, int8 = export_int8(student, train_labels, out, scene, cfg)
    t["exported"] = time.perf_counter()
    from .gate import decide

    pc = predict(CropModel(int8, threads=cfg.threads), gate_labels)
    pr = predict(CropModel(current, threads=cfg.threads), gate_labels)
    cand, cur = agreement_of(pc, gate_labels.keypoints), agreement_of(pr, gate_labels.keypoints)
    dec = decide(pc, pr, gate_labels.keypoints, gate_labels.sources, margin=cfg.gate_margin,
                 min_crops=cfg.gate_min_crops, max_risk=cfg.gate_max_risk, resamples=cfg.gate_resamples,
                 seed=cfg.seed)
    ok = dec.accepted and gate_verdict(cand, cur, cfg.gate_margin)
    adapted = None
    if ok:
        adapted = out / "adapted_int8.onnx"
        shutil.copyfile(int8, adapted)
    t["gated"] = time.perf_counter()
    log.info("gate: candidate %.1f vs current %.1f PCK vs teacher -> %s (%s)", cand.pck, cur.pck,
             "accepted" if ok else "refused", dec.reason)
    res = AdaptResult(scene=scene, config=cfg.to_dict(), accepted=ok,
                      gate={"candidate": cand.to_dict(), "current": cur.to_dict(), "margin": cfg.gate_margin,
                            "metric": "PCK@0.2 torso vs the teacher on the gate segment (held out in time)",
                            "evidence": dec.to_dict(), "reason": dec.reason},
                      candidate_int8=os.fspath(int8), candidate_fp32=os.fspath(fp32),
                      adapted=os.fspath(adapted) if adapted else None, current=os.fspath(current),
                      crops={"train": len(train_labels), "gate": len(gate_labels)}, training=training,
                      seconds={k: round(t[k] - t["start"], 1) for k in t if k != "start"})
    from .report import save_report

    save_report(res, out)
    return res
