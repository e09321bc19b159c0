"""BlazePose GHUM (lite / full / heavy) model card: person detector -> rotated ROI -> 39 landmarks.

The pipeline follows MediaPipe's ``pose_detection`` and ``pose_landmark`` graphs:

1. **Detector** (``pose_detection.tflite``, 224x224, float [-1, 1], letterboxed): 2254 SSD
   anchors, box + 4 alignment points per anchor, sigmoid scores above 0.5, weighted NMS at
   IoU 0.3. Alignment point 0 is the hip centre, point 1 encodes the body's size and rotation.
2. **ROI**: a square centred on the hip centre, side 2 x |kp1 - kp0| x 1.25, rotated so that
   kp1 lies straight above kp0 (the person upright in the crop).
3. **Landmarks** (256x256, float RGB [0, 1]): 39 x (x, y, z, visibility, presence) in crop
   pixels, refined from the 64x64 heatmaps, mapped back through the inverse crop affine.
   Landmarks 0-32 are the BlazePose body points; 33 (hip centre) and 34 (size/rotation point)
   give the next frame's ROI with the same formula as the detector.

Rotation convention: MediaPipe's rect rotation is clockwise; :class:`Roi` stores the person's
counter-clockwise rotation, so ``Roi.rotation = -mediapipe_rotation``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from edgepose.backends.base import Backend
from edgepose.errors import ConfigError, ModelLoadError
from edgepose.models._crop import Roi, apply_affine, crop, invert_affine
from edgepose.models.base import Estimate, PoseModel, StageTimer
from edgepose.types import to_coco17

log = logging.getLogger(__name__)

#: Detector input side (pose_detection.tflite is 224x224).
DETECTOR_INPUT = 224
#: SSD anchor strides of the detector's five output layers (MediaPipe pose_detection graph).
ANCHOR_STRIDES = (8, 16, 32, 32, 32)
#: Number of anchors these strides give on a 224x224 input: 28*28*2 + 14*14*2 + 7*7*6.
NUM_ANCHORS = 2254
#: Detections whose sigmoid score is below this are dropped (MediaPipe: 0.5).
MIN_DETECTION_SCORE = 0.5
#: Raw logits are clipped to +-this before the sigmoid (MediaPipe score_clipping_thresh).
SCORE_CLIP = 100.0
#: Boxes overlapping the best box by more than this IoU are merged into it (MediaPipe: 0.3).
NMS_IOU = 0.3
#: The ROI side is this times the alignment circle's diameter (MediaPipe RectTransformation).
ROI_SCALE = 1.25
#: Angle the hip-centre -> alignment-point vector has in an upright person (MediaPipe: 90 deg).
TARGET_ANGLE = math.pi / 2.0
#: Below this presence score the pose is lost and the detector runs again (MediaPipe: 0.5).
MIN_PRESENCE = 0.5
#: Heatmap refinement window (MediaPipe RefineLandmarksFromHeatmap kernel_size 7).
HEATMAP_KERNEL = 7
#: A landmark is refined only where the heatmap peak in its window reaches this (MediaPipe: 0.5).
HEATMAP_MIN_CONFIDENCE = 0.5
#: Landmarks in the landmark model's output: 33 body points + 6 auxiliary points.
NUM_LANDMARKS = 39
#: Auxiliary landmarks used for tracking: hip centre and the size/rotation point.
ALIGN_CENTER, ALIGN_SCALE = 33, 34


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def ssd_anchors(input_size: int = DETECTOR_INPUT, *, strides=ANCHOR_STRIDES,
                offset: float = 0.5) -> np.ndarray:
    """SSD anchor centres of MediaPipe's pose detector.

    Consecutive layers with the same stride share one feature map; every layer contributes
    two anchors per cell (aspect ratio 1 plus the interpolated scale). The detector uses
    ``fixed_anchor_size``, so every anchor's width and height are 1.

    Args:
        input_size: the square input side in pixels.
        strides: stride of each layer.
        offset: anchor centre offset within a cell (0.5 = cell centre).

    Returns:
        (N, 4) float32 (x_center, y_center, w, h), normalised to the input; N = 2254 for 224.
    """
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        side = int(math.ceil(input_size / strides[i]))
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        centres = np.stack([(xs + offset) / side, (ys + offset) / side], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        i = j
    xy = np.concatenate(out, axis=0)
    return np.hstack([xy, np.ones_like(xy)]).astype(np.float32)


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, *,
                      scale: float = DETECTOR_INPUT, min_score: float = MIN_DETECTION_SCORE
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the detector's raw outputs into boxes, alignment points and scores.

    Args:
        raw_boxes: (N, 12) or (1, N, 12): box (x_c, y_c, w, h) then 4 keypoints (x, y),
            offsets in input pixels relative to each anchor.
        raw_scores: (N,), (N, 1) or (1, N, 1) logits.
        anchors: (N, 4) from :func:`ssd_anchors`.
        scale: input side the offsets are expressed in.
        min_score: sigmoid score threshold.

    Returns:
        ``(boxes (M, 4) x0, y0, x1, y1, keypoints (M, 4, 2) x, y, scores (M,))``, all
        normalised to the (letterboxed) detector input, only detections scoring >= min_score.
    """
    raw = np.asarray(raw_boxes, dtype=np.float64).reshape(-1, 12)
    logits = np.asarray(raw_scores, dtype=np.float64).reshape(-1)
    anchors = np.asarray(anchors, dtype=np.float64)
    if not (len(raw) == len(logits) == len(anchors)):
        raise ConfigError(f"raw_boxes ({len(raw)}), raw_scores ({len(logits)}) and anchors "
                         f"({len(anchors)}) must have the same length")
    scores = sigmoid(np.clip(logits, -SCORE_CLIP, SCORE_CLIP))
    keep = scores >= min_score
    raw, anchors, scores = raw[keep], anchors[keep], scores[keep]
    # Six (x, y) pairs: box centre, box size, 4 keypoints; all scaled by the anchor size.
    pairs = raw.reshape(-1, 6, 2) / scale * anchors[:, None, 2:]
    centre, size = pairs[:, 0] + anchors[:, :2], pairs[:, 1]
    kps = pairs[:, 2:] + anchors[:, None, :2]
    boxes = np.hstack([centre - size / 2.0, centre + size / 2.0])
    return boxes.astype(np.float32), kps.astype(np.float32), scores.astype(np.float32)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) x0, y0, x1, y1 box with (M, 4) boxes; 0 where either is empty."""
    box, boxes = np.asarray(box, dtype=np.float64), np.asarray(boxes, dtype=np.float64)
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = _area(box) + _area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, *,
                 iou_threshold: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-maximum suppression.

    Take the best remaining detection; every remaining detection (itself included) whose IoU
    with it exceeds ``iou_threshold`` is merged into it: box corners and keypoints become the
    score-weighted mean over the group, the score stays the best one's. Repeat on the rest.

    Args:
        boxes: (M, 4) x0, y0, x1, y1.
        keypoints: (M, K, 2).
        scores: (M,).
        iou_threshold: merge boxes overlapping more than this.

    Returns:
        ``(boxes, keypoints, scores)`` of the merged detections, best first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    keypoints = keypoints.reshape(len(boxes), keypoints.shape[-2] if keypoints.ndim == 3 else 0, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    remaining = np.argsort(-scores, kind="stable")
    out_b, out_k, out_s = [], [], []
    while remaining.size:
        best = remaining[0]
        group_mask = box_iou(boxes[best], boxes[remaining]) > iou_threshold
        group_mask[0] = True  # a degenerate (zero-area) best box still ends its own group
        group = remaining[group_mask]
        w = scores[group]
        out_b.append((boxes[group] * w[:, None]).sum(0) / w.sum())
        out_k.append((keypoints[group] * w[:, None, None]).sum(0) / w.sum())
        out_s.append(scores[best])
        remaining = remaining[~group_mask]
    k = keypoints.shape[1]
    return (np.asarray(out_b, dtype=np.float32).reshape(-1, 4),
            np.asarray(out_k, dtype=np.float32).reshape(-1, k, 2),
            np.asarray(out_s, dtype=np.float32))


def normalize_radians(angle: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return float(angle - 2.0 * math.pi * math.floor((angle + math.pi) / (2.0 * math.pi)))


def roi_from_alignment(center, scale_point, *, scale: float = ROI_SCALE,
                       target_angle: float = TARGET_ANGLE) -> Roi:
    """The rotated square ROI MediaPipe derives from two alignment points (frame pixels).

    Side = ``2 * |scale_point - center| * scale``; the person's rotation is how far the vector
    centre -> scale_point is from ``target_angle`` (straight up in an upright person).
    MediaPipe's clockwise rect rotation is ``target - atan2(-(y1 - y0), x1 - x0)``; Roi stores
    the counter-clockwise one, its negative.

    Args:
        center: (x, y) of alignment point 0 (hip centre).
        scale_point: (x, y) of alignment point 1 (encodes size and rotation).
        scale: ROI side over the alignment circle's diameter.
        target_angle: radians, the vector's angle (y up) in an upright person.
    """
    x0, y0 = float(center[0]), float(center[1])
    x1, y1 = float(scale_point[0]), float(scale_point[1])
    side = 2.0 * math.hypot(x1 - x0, y1 - y0) * scale
    rotation = normalize_radians(math.atan2(-(y1 - y0), x1 - x0) - target_angle)
    return Roi.square(x0, y0, side, rotation)


def refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray, *, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN_CONFIDENCE) -> np.ndarray:
    """MediaPipe's landmark refinement from the (H, W, K) logit heatmaps.

    For each landmark, the sigmoid heatmap in a ``kernel`` x ``kernel`` window around it gives
    a weighted mean position, used when the window's peak reaches ``min_confidence``. As in
    MediaPipe, a cell's position is its index over the heatmap size (cell corner).

    Args:
        xy: (K, 2) landmark positions normalised to the crop ([0, 1]).
        heatmap: (H, W, K) or (1, H, W, K) raw heatmap logits.

    Returns:
        (K, 2) refined normalised positions (unchanged where not confident or outside).
    """
    hm = np.asarray(heatmap, dtype=np.float64)
    hm = hm.reshape(hm.shape[-3:])
    h, w, k = hm.shape
    out = np.array(xy, dtype=np.float64, copy=True)
    half = (kernel - 1) // 2
    for i in range(min(k, len(out))):
        col, row = math.floor(out[i, 0] * w), math.floor(out[i, 1] * h)
        if not (0 <= col < w and 0 <= row < h):
            continue
        r0, r1 = max(0, row - half), min(h, row + half + 1)
        c0, c1 = max(0, col - half), min(w, col + half + 1)
        conf = sigmoid(hm[r0:r1, c0:c1, i])
        total = conf.sum()
        if total > 0 and conf.max() >= min_confidence:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i] = [(cols * conf).sum() / total / w, (rows * conf).sum() / total / h]
    return out


def decode_landmarks(raw: np.ndarray, crop_to_frame: np.ndarray, input_size: tuple[int, int], *,
                     heatmap: np.ndarray | None = None) -> np.ndarray:
    """Decode the landmark model's ``Identity`` [1, 195] output to frame pixels.

    Args:
        raw: 39 x (x, y, z, visibility, presence); x, y, z in crop pixels, the last two logits.
        crop_to_frame: 2x3 affine from crop to frame coordinates.
        input_size: (w, h) of the landmark model input.
        heatmap: optional ``Identity_3`` heatmaps for :func:`refine_from_heatmap`.

    Returns:
        (39, 5) float32: x, y (frame px), z (frame px scale, hip-relative depth),
        sigmoid(visibility), sigmoid(presence).
    """
    lm = np.asarray(raw, dtype=np.float64).reshape(NUM_LANDMARKS, 5)
    w, h = input_size
    xy = lm[:, :2] / [w, h]
    if heatmap is not None:
        xy = refine_from_heatmap(xy, heatmap)
    out = np.empty((NUM_LANDMARKS, 5), dtype=np.float64)
    out[:, :2] = apply_affine(crop_to_frame, xy * [w, h])
    px_per_crop_px = math.sqrt(abs(np.linalg.det(crop_to_frame[:, :2])))
    out[:, 2] = lm[:, 2] * px_per_crop_px
    out[:, 3:] = sigmoid(lm[:, 3:])
    return out.astype(np.float32)


def _bad_outputs(backend: Backend, expected: str, fix_file: str) -> ModelLoadError:
    got = ", ".join(o.describe() for o in backend.outputs)
    return ModelLoadError(f"{backend.model_path!r} outputs {got}; expected {expected}. "
                          f"Pass {fix_file}")


class BlazePose(PoseModel):
    """BlazePose GHUM landmarks on the rotated ROI of the BlazePose person detector.

    Args:
        backend: the landmark model (``pose_landmark_{lite,full,heavy}.tflite``).
        detector: the person detector (``pose_detection.tflite``).
        name: card name.
        refine_heatmap: refine x, y from the heatmap output as MediaPipe does.
        min_presence: presence score below which :meth:`next_roi` reports the pose lost.
    """

    keypoint_format = "blazepose33"
    has_detector = True

    def __init__(self, backend: Backend, *, detector: Backend, name: str = "blazepose",
                 refine_heatmap: bool = True, min_presence: float = MIN_PRESENCE):
        super().__init__(backend)
        self.name = name
        self.detector = detector
        self.refine_heatmap = refine_heatmap
        if not 0.0 <= min_presence <= 1.0:
            raise ConfigError(f"min_presence must be in [0, 1], got {min_presence!r}")
        self.min_presence = float(min_presence)
        self._lm_in = self._image_input(backend, "landmark", (256, 256))
        self.input_size = (int(self._lm_in.shape[2]), int(self._lm_in.shape[1]))
        outs = {s.name: s for s in backend.outputs}
        if "Identity" not in outs or "Identity_1" not in outs:
            raise _bad_outputs(backend, "'Identity' [1,195] landmarks and 'Identity_1' [1,1] "
                               "presence", "pose_landmark_{lite,full,heavy}.tflite")
        self._heatmap_out = "Identity_3" if "Identity_3" in outs else None
        self._det_in = self._image_input(detector, "detector", (DETECTOR_INPUT, DETECTOR_INPUT))
        self._anchors = ssd_anchors(DETECTOR_INPUT)
        det = sorted(detector.outputs, key=lambda s: s.shape[-1] if s.shape else 0)
        if (len(det) != 2 or tuple(det[0].shape[-2:]) != (len(self._anchors), 1)
                or tuple(det[1].shape[-2:]) != (len(self._anchors), 12)):
            raise _bad_outputs(detector, f"[1,{NUM_ANCHORS},12] boxes and [1,{NUM_ANCHORS},1] "
                               "scores", "pose_detection.tflite")
        self._det_scores, self._det_boxes = det[0].name, det[1].name

    @staticmethod
    def _image_input(backend: Backend, role: str, size: tuple[int, int]):
        spec = backend.inputs[0] if len(backend.inputs) == 1 else None
        if (spec is None or tuple(spec.shape[1:]) != (size[1], size[0], 3)
                or spec.dtype != np.float32):
            got = ", ".join(s.describe() for s in backend.inputs)
            raise ModelLoadError(
                f"{backend.model_path!r} inputs {got} do not fit the BlazePose {role}: "
                f"expected one [1,{size[1]},{size[0]},3] float32 image input")
        return spec

    def backends(self) -> list[Backend]:
        return [self.backend, self.detector]

    # -- detector ------------------------------------------------------------------------------
    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the person detector on the whole (letterboxed) frame.

        Returns:
            ``(boxes (M, 4), keypoints (M, 4, 2), scores (M,))`` in frame pixels after
            weighted NMS, best first.
        """
        h, w = frame.shape[:2]
        img, m = crop(frame, Roi.full_frame(w, h), DETECTOR_INPUT, DETECTOR_INPUT)
        feed = (img.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0))[None]
        out = self.detector.run({self._det_in.name: feed})
        boxes, kps, scores = decode_detections(out[self._det_boxes], out[self._det_scores],
                                               self._anchors)
        boxes, kps, scores = weighted_nms(boxes, kps, scores)
        inv = invert_affine(m)
        kps_px = apply_affine(inv, kps.reshape(-1, 2) * DETECTOR_INPUT).reshape(kps.shape)
        corners = apply_affine(inv, boxes.reshape(-1, 2) * DETECTOR_INPUT).reshape(-1, 4)
        return corners.astype(np.float32), kps_px.astype(np.float32), scores

    def initial_roi(self, frame: np.ndarray) -> tuple[Roi | None, dict[str, float]]:
        """The rotated ROI of the best detection (alignment points 0 and 1); None if nobody."""
        t = StageTimer()
        with t("detect"):
            _, kps, scores = self.detect(frame)
        if len(scores) == 0:
            log.debug("BlazePose detector found no person")
            return None, t.ms
        roi = roi_from_alignment(kps[0, 0], kps[0, 1])
        if roi.width <= 1.0:  # degenerate alignment points: nothing to crop
            log.debug("BlazePose detection with a degenerate ROI %s ignored", roi)
            return None, t.ms
        return roi, t.ms

    # -- landmarks ------------------------------------------------------------------------------
    def estimate(self, frame: np.ndarray, roi: Roi) -> Estimate:
        t = StageTimer()
        w, h = self.input_size
        with t("preprocess"):
            img, m = crop(frame, roi, w, h)
            feed = (img.astype(np.float32) * np.float32(1.0 / 255.0))[None]
        with t("infer"):
            out = self.backend.run({self._lm_in.name: feed})
        with t("decode"):
            heat = out.get(self._heatmap_out) if self.refine_heatmap and self._heatmap_out else None
            native = decode_landmarks(out["Identity"], invert_affine(m), self.input_size,
                                      heatmap=heat)
            # Identity_1 is already a probability (the model ends in a sigmoid; MediaPipe's
            # TensorsToFloats applies no activation): 0 on empty crops, ~1 on a person.
            presence = float(np.clip(np.asarray(out["Identity_1"]).reshape(-1)[0], 0.0, 1.0))
            kps, _ = to_coco17(native[:33, :2], self.keypoint_format)
            scores, _ = to_coco17(native[:33, 3], self.keypoint_format)
        return Estimate(kps.astype(np.float32), scores.astype(np.float32), roi, presence,
                        native=native, timings_ms=t.ms)

    def next_roi(self, est: Estimate, image_size: tuple[int, int]) -> Roi | None:
        """MediaPipe's landmarks-to-ROI: the alignment of aux landmarks 33 and 34.

        Returns None (re-run the detector) when the presence score is below ``min_presence``.
        A COCO-17-only estimate (no BlazePose landmarks, e.g. a server answer passed to
        ``PoseEstimator.reseed``) gets the keypoint-based crop of the base class.
        """
        if est.native is None and est.score >= self.min_presence:
            return super().next_roi(est, image_size)  # an external COCO-17 pose (e.g. reseed)
        if est.score < self.min_presence or est.native is None or len(est.native) < NUM_LANDMARKS:
            return None
        roi = roi_from_alignment(est.native[ALIGN_CENTER, :2], est.native[ALIGN_SCALE, :2])
        return roi if roi.width > 1.0 else None
