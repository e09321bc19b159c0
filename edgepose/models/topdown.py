"""Top-down multi-person: a person detector, then a single-person model on each person's crop.

Pipeline per frame: the detector gives one ROI per person (BlazePose detector: the rotated
body ROI from its alignment points; or MoveNet MultiPose boxes); the single-person card
(MoveNet Lightning / Thunder, or any :class:`PoseModel`) runs on every crop, batched in one
call when the model's batch axis is dynamic, else one call per person (the shipped MoveNet
files have a fixed batch of 1; LiteRT cannot resize them either: GATHER_ND fails at batch 4).
Optionally a second pass runs on the crop derived from the first pass's keypoints (the
estimator's image refinement). Poses the single-person card scores below ``min_pose_score``
are dropped, the rest are rescored as detector score x mean confident-keypoint score (HRNet's
rescoring, used for ranking) and duplicates are removed with OKS-NMS.

In video mode :class:`~edgepose.multi.MultiPoseEstimator` skips the detector on most frames:
:meth:`TopDown.estimate_rois` follows each tracked person from its previous keypoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgepose.backends.base import Backend
from edgepose.errors import ConfigError, ModelLoadError
from edgepose.models._crop import Roi, apply_affine, crop, invert_affine
from edgepose.models.base import Estimate, PoseModel, StageTimer
from edgepose.models.multipose import MoveNetMultiPose, MultiPersonModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """One detected person: the crop to run the pose model on, and the detector's score."""

    roi: Roi
    score: float


class PersonDetector(Protocol):
    """Anything with ``detect(frame) -> list[Detection]`` (best first) and ``close()``."""

    def detect(self, frame: np.ndarray) -> list[Detection]: ...

    def close(self) -> None: ...


class BlazePoseDetector:
    """The BlazePose person detector (``pose_detection.tflite``) as a multi-person detector.

    Uses the decoding of :mod:`edgepose.models.blazepose` (SSD anchors, weighted NMS); each
    detection's ROI is MediaPipe's rotated body ROI from alignment points 0 (hips) and 1.

    Args:
        backend: the opened detector file.
        min_score: detection score threshold (MediaPipe's default 0.5).
        max_people: keep at most this many detections, best first.
    """

    def __init__(self, backend: Backend, *, min_score: float | None = None, max_people: int = 6):
        from edgepose.models import blazepose as bp

        self._bp = bp
        self.backend = backend
        self.min_score = bp.MIN_DETECTION_SCORE if min_score is None else float(min_score)
        self.max_people = max_people
        spec = backend.inputs[0] if len(backend.inputs) == 1 else None
        size = bp.DETECTOR_INPUT
        if spec is None or tuple(spec.shape[1:]) != (size, size, 3) or spec.dtype != np.float32:
            got = ", ".join(s.describe() for s in backend.inputs)
            raise ModelLoadError(f"{backend.model_path!r} inputs {got} are not the BlazePose detector's "
                                 f"[1,{size},{size},3] float32; pass pose_detection.tflite")
        outs = sorted(backend.outputs, key=lambda s: s.shape[-1] if s.shape else 0)
        if len(outs) != 2 or outs[0].shape[-1] != 1 or outs[1].shape[-1] != 12:
            raise ModelLoadError(f"{backend.model_path!r} outputs are not the BlazePose detector's "
                                 "[1,2254,12] boxes and [1,2254,1] scores; pass pose_detection.tflite")
        self._in, self._scores, self._boxes = spec.name, outs[0].name, outs[1].name
        self._anchors = bp.ssd_anchors(size)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        bp, size = self._bp, self._bp.DETECTOR_INPUT
        h, w = frame.shape[:2]
        img, m = crop(frame, Roi.full_frame(w, h), size, size)
        feed = (img.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0))[None]
        out = self.backend.run({self._in: feed})
        boxes, kps, scores = bp.decode_detections(out[self._boxes], out[self._scores], self._anchors,
                                                  min_score=self.min_score)
        if len(scores) == 0:
            return []
        _, kps, scores = bp.weighted_nms(boxes, kps, scores)
        inv = invert_affine(m)
        dets = []
        for k, s in zip(kps[: self.max_people], scores[: self.max_people]):
            px = apply_affine(inv, np.asarray(k, dtype=np.float64) * size)
            roi = bp.roi_from_alignment(px[0], px[1])
            if roi.width > 1.0:
                dets.append(Detection(roi, float(s)))
        return dets

    def close(self) -> None:
        self.backend.close()


class MultiPoseBoxDetector:
    """MoveNet MultiPose's person boxes as a detector: square crops 1.25 x the box (eval protocol).

    Args:
        model: a :class:`MoveNetMultiPose` card.
        scale: crop side over the box's longer side.
    """

    def __init__(self, model: MoveNetMultiPose, *, scale: float = 1.25):
        self.model, self.scale = model, scale

    def detect(self, frame: np.ndarray) -> list[Detection]:
        people, _ = self.model.detect_people(frame)
        return [Detection(Roi.from_box(*e.roi.box(), scale=self.scale), e.score) for e in people]

    @property
    def backend(self) -> Backend:
        return self.model.backend

    def close(self) -> None:
        self.model.close()


@dataclass
class TopDownOptions:
    """Options of :class:`TopDown`.

    Attributes:
        refine: run a second pass on the crop from the first pass's keypoints and keep the
            better one (the estimator's image refinement; doubles the per-person cost).
        min_pose_score: people whose pose score (the single-person card's, e.g. MoveNet's mean
            keypoint score) is below this are dropped, as in the estimator (0.2, MoveNet's tfjs
            keypoint threshold). The reported score is then the rescored one (ranking only).
        keypoint_threshold: keypoints above this score count in the rescoring mean (HRNet: 0.2).
        oks_nms: drop a pose whose OKS with a better one exceeds this (HRNet's 0.9): two
            detections of one person.
    """

    refine: bool = True
    min_pose_score: float = 0.2
    keypoint_threshold: float = 0.2
    oks_nms: float = 0.9

    def __post_init__(self):
        for f in ("min_pose_score", "keypoint_threshold", "oks_nms"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"TopDownOptions.{f} must be in [0, 1], got {v!r}")


def rescore(scores: np.ndarray, det_score: float, threshold: float) -> float:
    """Detector score x mean of the keypoint scores above ``threshold`` (0 when none is)."""
    s = np.asarray(scores)
    ok = s > threshold
    return float(det_score * s[ok].mean()) if ok.any() else 0.0


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float) -> list[int]:
    """Indices kept by greedy OKS non-maximum suppression (best first).

    Args:
        keypoints: (N, 17, 2) poses.
        scores: (N,) person scores.
        areas: (N,) person areas in px^2 (the OKS scale).
        threshold: suppress a pose whose OKS with a kept better one exceeds this.
    """
    from edgepose.types import COCO_SIGMAS

    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    var = (2.0 * COCO_SIGMAS) ** 2
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            d2 = ((keypoints[i] - keypoints[j]) ** 2).sum(-1)
            if np.exp(-d2 / var / (2.0 * (areas[j] + np.spacing(1)))).mean() > threshold:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


class TopDown(MultiPersonModel):
    """A person detector followed by a single-person card on each person.

    Args:
        pose_model: the single-person card (e.g. MoveNet Thunder).
        detector: a :class:`PersonDetector` (:class:`BlazePoseDetector`, :class:`MultiPoseBoxDetector`).
        name: card name.
        options: :class:`TopDownOptions`.
    """

    has_detector = True
    supports_rois = True

    def __init__(self, pose_model: PoseModel, detector: PersonDetector, *, name: str = "topdown",
                 options: TopDownOptions | None = None):
        super().__init__(pose_model.backend)
        self.pose_model, self.detector, self.name = pose_model, detector, name
        self.options = options or TopDownOptions()
        self.keypoint_format = pose_model.keypoint_format
        self.input_size = pose_model.input_size
        spec = pose_model.backend.inputs[0] if pose_model.backend.inputs else None
        #: Whether crops run in one batched call (the model's batch axis is dynamic).
        self.batched = bool(_is_movenet(pose_model) and spec is not None and spec.shape[0] is None)

    def backends(self) -> list[Backend]:
        det = getattr(self.detector, "backend", None)
        return self.pose_model.backends() + ([det] if det is not None else [])

    def close(self) -> None:
        self.pose_model.close()
        self.detector.close()

    # -- single-person interface (PoseEstimator) -------------------------------------------------
    def estimate(self, frame: np.ndarray, roi: Roi) -> Estimate:
        return self.pose_model.estimate(frame, roi)

    def initial_roi(self, frame: np.ndarray) -> tuple[Roi | None, dict[str, float]]:
        t = StageTimer()
        with t("detect"):
            dets = self.detector.detect(frame)
        return (dets[0].roi if dets else None), t.ms

    def next_roi(self, est: Estimate, image_size: tuple[int, int]) -> Roi | None:
        return self.pose_model.next_roi(est, image_size)

    # -- multi-person ----------------------------------------------------------------------------
    def detect_people(self, frame: np.ndarray) -> tuple[list[Estimate], dict[str, float]]:
        t = StageTimer()
        with t("detect"):
            dets = self.detector.detect(frame)
        ests, ms = self._run(frame, [d.roi for d in dets], [d.score for d in dets])
        for k, v in ms.items():
            t.ms[k] = t.ms.get(k, 0.0) + v
        return ests, t.ms

    def estimate_rois(self, frame: np.ndarray, rois: list[Roi]) -> tuple[list[Estimate], dict[str, float]]:
        return self._run(frame, rois, [1.0] * len(rois), refine=False)

    def _run(self, frame, rois, det_scores, *, refine: bool | None = None):
        opts = self.options
        refine = opts.refine if refine is None else refine
        ests, ms = self.estimate_many(frame, rois)
        if refine and ests:
            size = (frame.shape[1], frame.shape[0])
            idx = [i for i, e in enumerate(ests) if self.pose_model.next_roi(e, size) is not None]
            again, ms2 = self.estimate_many(frame, [self.pose_model.next_roi(ests[i], size) for i in idx])
            for i, e2 in zip(idx, again):
                if e2.score >= ests[i].score:
                    ests[i] = e2
            for k, v in ms2.items():
                ms[k] = ms.get(k, 0.0) + v
        t = StageTimer()
        with t("nms"):
            kept = []
            for e, d in zip(ests, det_scores):
                if e.score >= opts.min_pose_score:  # the single-person card's own pose score
                    e.score = rescore(e.scores, d, opts.keypoint_threshold)
                    kept.append(e)
            ests = kept
            if len(ests) > 1:
                kps = np.stack([e.keypoints for e in ests])
                areas = np.array([_area(e) for e in ests])
                ests = [ests[i] for i in oks_nms(kps, np.array([e.score for e in ests]), areas, opts.oks_nms)]
        ms.update(t.ms)
        return ests, ms

    def estimate_many(self, frame: np.ndarray, rois: list[Roi]) -> tuple[list[Estimate], dict[str, float]]:
        """The single-person card on every ROI: one batched call when possible, else a loop."""
        if not rois:
            return [], {}
        if self.batched and len(rois) > 1:
            return _movenet_batch(self.pose_model, frame, rois)
        out, ms = [], {}
        for roi in rois:
            e = self.pose_model.estimate(frame, roi)
            out.append(e)
            for k, v in e.timings_ms.items():
                ms[k] = ms.get(k, 0.0) + v
        return out, ms


def _area(e: Estimate) -> float:
    ok = e.scores > 0.2
    pts = e.keypoints[ok] if ok.sum() >= 2 else e.keypoints
    span = pts.max(0) - pts.min(0)
    return float(max(span[0] * span[1], 1.0))


def _is_movenet(model: PoseModel) -> bool:
    from edgepose.models.movenet import MoveNet

    return isinstance(model, MoveNet)


def _movenet_batch(model: PoseModel, frame: np.ndarray, rois: list[Roi]):
    """All crops through a MoveNet with a dynamic batch axis in one call."""
    from edgepose.models.movenet import decode_movenet

    t = StageTimer()
    spec = model.backend.inputs[0]
    w, h = model.input_size
    with t("preprocess"):
        crops = [crop(frame, roi, w, h) for roi in rois]
        feed = np.stack([c for c, _ in crops]).astype(spec.dtype, copy=False)
    with t("infer"):
        out = model.backend.run({spec.name: feed})[model.backend.outputs[0].name]
    ests = []
    with t("decode"):
        for i, (roi, (_, m)) in enumerate(zip(rois, crops)):
            kps, scores = decode_movenet(out[i], invert_affine(m), model.input_size)
            ests.append(Estimate(kps, scores, roi, float(scores.mean())))
    return ests, t.ms


def build_card(backends: list[Backend], name: str) -> MultiPersonModel:
    """The registry factory of the multi-person cards.

    ``movenet-multipose``: one backend. ``topdown-mp-*``: (single-person MoveNet, MultiPose)
    backends, MultiPose's boxes as the detector. Other ``topdown-*``: (single-person MoveNet,
    BlazePose detector) backends.
    """
    if name == "movenet-multipose":
        return MoveNetMultiPose(backends[0], name=name)
    from edgepose.models.movenet import MoveNet

    single = MoveNet(backends[0], name=name)
    if name.startswith("topdown-mp-"):
        detector = MultiPoseBoxDetector(MoveNetMultiPose(backends[1]))
    else:
        detector = BlazePoseDetector(backends[1])
    return TopDown(single, detector, name=name)


__all__ = ["TopDown", "TopDownOptions", "Detection", "PersonDetector", "BlazePoseDetector",
           "MultiPoseBoxDetector", "rescore", "oks_nms", "build_card"]
