"""MoveNet MultiPose Lightning model card: up to 6 people in one pass, bottom-up.

The model takes the frame letterboxed to a ``[1, 256, 256, 3]`` int32 RGB square and returns
``[1, 6, 56]``: for each of 6 person slots, 17 x (y, x, score) normalised to the input, then the
person box (ymin, xmin, ymax, xmax) and the person score. :func:`decode_multipose` (pure numpy)
maps them back to frame pixels.

Multi-person cards (this one and :class:`edgepose.models.topdown.TopDown`) implement
:class:`MultiPersonModel`: ``detect_people(frame)`` returns one :class:`Estimate` per person.
As a plain :class:`PoseModel` (for :class:`~edgepose.estimator.PoseEstimator`) this card returns
the best-scoring person of the ROI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepose.backends.base import Backend
from edgepose.errors import ConfigError, ModelLoadError
from edgepose.models._crop import Roi, apply_affine, crop, invert_affine
from edgepose.models.base import Estimate, PoseModel, StageTimer

#: Person slots in the model's output.
NUM_SLOTS = 6
#: Values per slot: 17 x (y, x, score) + (ymin, xmin, ymax, xmax, score).
SLOT_SIZE = 56
#: Person score below which a slot is empty: the tfjs pose-detection default (minPoseScore).
MIN_POSE_SCORE = 0.25


@dataclass
class MultiPoseDecoded:
    """Decoded people, best first.

    Attributes:
        keypoints: (N, 17, 2) float32 x, y in frame px.
        scores: (N, 17) float32 keypoint scores.
        boxes: (N, 4) float32 x0, y0, x1, y1 in frame px (the model's person boxes).
        person_scores: (N,) float32.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    person_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.person_scores)


def decode_multipose(output: np.ndarray, crop_to_frame: np.ndarray, input_size: tuple[int, int], *,
                     min_score: float = MIN_POSE_SCORE) -> MultiPoseDecoded:
    """Decode MoveNet MultiPose's ``[1, 6, 56]`` output into frame pixels.

    Args:
        output: the raw output tensor (any shape with 6 x 56 values).
        crop_to_frame: 2x3 affine from model-input pixels to frame pixels.
        input_size: (w, h) of the model input.
        min_score: slots whose person score is below this are dropped.

    Returns:
        :class:`MultiPoseDecoded`, sorted by person score, best first.
    """
    out = np.asarray(output, dtype=np.float32).reshape(-1, SLOT_SIZE)
    keep = out[:, 55] >= min_score
    out = out[keep][np.argsort(-out[keep, 55], kind="stable")]
    n = len(out)
    w, h = input_size
    kp = out[:, :51].reshape(n, 17, 3)
    xy = np.stack([kp[..., 1] * w, kp[..., 0] * h], axis=-1).reshape(-1, 2)
    kps = apply_affine(crop_to_frame, xy).reshape(n, 17, 2)
    corners = np.stack([out[:, 52] * w, out[:, 51] * h, out[:, 54] * w, out[:, 53] * h], axis=1)
    boxes = apply_affine(crop_to_frame, corners.reshape(-1, 2)).reshape(n, 4)
    return MultiPoseDecoded(kps.astype(np.float32), kp[..., 2].copy(), boxes.astype(np.float32),
                            out[:, 55].copy())


def box_roi(box) -> Roi:
    """The (non-square) :class:`Roi` of an x0, y0, x1, y1 box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return Roi((x0 + x1) / 2.0, (y0 + y1) / 2.0, max(x1 - x0, 1.0), max(y1 - y0, 1.0))


class MultiPersonModel(PoseModel):
    """A model card that finds every person in a frame.

    Subclasses implement :meth:`detect_people`. Cards that can re-run on given ROIs (top-down:
    the crops of tracked people, no detector pass) set ``supports_rois`` and implement
    :meth:`estimate_rois`.
    """

    #: Whether :meth:`estimate_rois` can follow tracked people without a detector pass.
    supports_rois = False

    def detect_people(self, frame: np.ndarray) -> tuple[list[Estimate], dict[str, float]]:
        """Every person in ``frame``, best first, and the per-stage timings of the pass.

        ``Estimate.roi`` is the region the person was found in (the person box for MultiPose,
        the crop for top-down cards).
        """
        raise NotImplementedError

    def estimate_rois(self, frame: np.ndarray, rois: list[Roi]
                      ) -> tuple[list[Estimate], dict[str, float]]:
        """One estimate per ROI and the timings (top-down cards only)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-ROI path; use detect_people")


class MoveNetMultiPose(MultiPersonModel):
    """MoveNet MultiPose Lightning (``[1,256,256,3]`` int32 -> ``[1,6,56]``).

    Args:
        backend: the opened model file.
        name: card name.
        min_pose_score: people scoring below this are not reported (default: tfjs's 0.25).
    """

    keypoint_format = "coco17"
    #: ``Estimate.roi`` is the model's person box (reported as ``Pose.box``).
    roi_is_box = True

    def __init__(self, backend: Backend, *, name: str = "movenet-multipose",
                 min_pose_score: float = MIN_POSE_SCORE):
        super().__init__(backend)
        self.name = name
        if not 0.0 <= min_pose_score <= 1.0:
            raise ConfigError(f"min_pose_score must be in [0, 1], got {min_pose_score!r}")
        self.min_pose_score = float(min_pose_score)
        spec = backend.inputs[0] if len(backend.inputs) == 1 else None
        if spec is None or len(spec.shape) != 4 or spec.shape[3] != 3:
            got = ", ".join(s.describe() for s in backend.inputs)
            raise ModelLoadError(
                f"{backend.model_path!r} inputs {got} are not a MoveNet MultiPose input "
                "(one [1, H, W, 3] image); pass movenet_multipose_lightning_fp32.onnx")
        out = backend.outputs[0] if backend.outputs else None
        if out is None or (out.shape and out.shape[-1] not in (None, SLOT_SIZE)):
            got = ", ".join(s.describe() for s in backend.outputs)
            raise ModelLoadError(
                f"{backend.model_path!r} outputs {got}; MoveNet MultiPose gives [1, 6, 56]. "
                "For a single-person MoveNet use the movenet-* cards")
        self._in, self._out = spec, out.name
        self.input_size = (int(spec.shape[2] or 256), int(spec.shape[1] or 256))

    def run_roi(self, frame: np.ndarray, roi: Roi, *, min_score: float | None = None
                ) -> tuple[MultiPoseDecoded, dict[str, float]]:
        """Run on ``roi`` (letterboxed square) of ``frame``; all people above ``min_score``."""
        t = StageTimer()
        w, h = self.input_size
        side = max(roi.width, roi.height)
        sq = Roi.square(roi.cx, roi.cy, side, roi.rotation)
        with t("preprocess"):
            img, m = crop(frame, sq, w, h)
            feed = img[None].astype(self._in.dtype, copy=False)
        with t("infer"):
            out = self.backend.run({self._in.name: feed})[self._out]
        with t("decode"):
            dec = decode_multipose(out, invert_affine(m), self.input_size,
                                   min_score=self.min_pose_score if min_score is None else min_score)
        return dec, t.ms

    def detect_people(self, frame: np.ndarray) -> tuple[list[Estimate], dict[str, float]]:
        h, w = frame.shape[:2]
        dec, ms = self.run_roi(frame, Roi.full_frame(w, h))
        return to_estimates(dec), ms

    def estimate(self, frame: np.ndarray, roi: Roi) -> Estimate:
        """The best person in ``roi`` (the best slot, however low its score)."""
        dec, ms = self.run_roi(frame, roi, min_score=0.0)
        best = to_estimates(dec)[0]
        best.timings_ms = ms
        return best


def to_estimates(dec: MultiPoseDecoded) -> list[Estimate]:
    """One :class:`Estimate` per decoded person; ``roi`` is the person's box."""
    return [Estimate(dec.keypoints[i], dec.scores[i], box_roi(dec.boxes[i]), float(dec.person_scores[i]))
            for i in range(len(dec))]


__all__ = ["MoveNetMultiPose", "MultiPersonModel", "MultiPoseDecoded", "decode_multipose",
           "box_roi", "to_estimates", "MIN_POSE_SCORE", "NUM_SLOTS"]
