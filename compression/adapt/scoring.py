"""Teacher agreement of a deployed model on labelled crops of one scene.

The reference is the teacher (MoveNet Thunder) on the same person crops (:func:`label_media`
caches its keypoints); a model under test reads each crop resized to its own input side. Scores:
PCK@0.2 x torso against the teacher's keypoints (teacher score >= ``MIN_TEACHER_SCORE`` counts
as labelled) and ``disagreement = 100 - PCK``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from edgepose.errors import ModelLoadError

#: Teacher keypoint score from which a keypoint is a reference label.
MIN_TEACHER_SCORE = 0.3


@dataclass(frozen=True)
class Agreement:
    """PCK of a model against the teacher on a set of crops.

    Attributes:
        pck: PCK@0.2 torso against the teacher (percent).
        disagreement: 100 - pck.
        crops: crops scored; joints: teacher-labelled joints scored.
    """

    pck: float
    disagreement: float
    crops: int
    joints: int

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class CropModel:
    """An ONNX pose model run on square RGB crops (``[1, s, s, 3]`` in, ``[1, 1, 17, 3]`` out)."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = 1):
        import onnxruntime as ort

        if not os.path.isfile(path):
            raise ModelLoadError(f"model not found: {os.fspath(path)!r}")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self._sess = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            raise ModelLoadError(f"cannot load {os.fspath(path)!r} with ONNX Runtime: {exc}") from exc
        inp = self._sess.get_inputs()[0]
        self._in, self.size = inp.name, int(inp.shape[1])
        self._dtype = np.uint8 if "uint8" in inp.type else (np.float32 if "float" in inp.type else np.int32)

    def __call__(self, crop_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (17, 3) (y, x, score) normalised to the crop."""
        import cv2

        if crop_rgb.shape[0] != self.size:
            crop_rgb = cv2.resize(crop_rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        out = self._sess.run(None, {self._in: crop_rgb[None].astype(self._dtype)})[0]
        return np.asarray(out, np.float32).reshape(17, 3)


def teacher_reference(keypoints: np.ndarray) -> np.ndarray:
    """(N, 17, 3) teacher (y, x, score) -> (N, 17, 3) (x, y, labelled) ground truth for :func:`pck_torso`."""
    k = np.asarray(keypoints, np.float64)
    return np.stack([k[..., 1], k[..., 0], (k[..., 2] >= MIN_TEACHER_SCORE).astype(np.float64)], axis=-1)


def predict(model: CropModel, labels, indices=None) -> np.ndarray:
    """(N, 17, 3) predictions of ``model`` on the crops ``indices`` of a LabelSet."""
    idx = np.arange(len(labels)) if indices is None else np.asarray(indices)
    return np.stack([model(labels.image(int(i))) for i in idx]) if len(idx) else np.zeros((0, 17, 3), np.float32)


def agreement_of(pred: np.ndarray, teacher: np.ndarray) -> Agreement:
    """PCK@0.2 torso of ``pred`` (N, 17, 3 y/x/score) against the teacher's (N, 17, 3)."""
    from edgepose.eval.metrics import pck_torso

    if not len(pred):
        return Agreement(float("nan"), float("nan"), 0, 0)
    r = pck_torso(np.stack([pred[..., 1], pred[..., 0]], axis=-1), teacher_reference(teacher))
    return Agreement(r.value, 100.0 - r.value, len(pred), r.total)


def agreement(model_path: str | os.PathLike, labels, indices=None, *, threads: int | None = 1) -> Agreement:
    """Teacher agreement of the ONNX model at ``model_path`` on (a subset of) a LabelSet."""
    idx = np.arange(len(labels)) if indices is None else np.asarray(indices)
    pred = predict(CropModel(model_path, threads=threads), labels, idx)
    return agreement_of(pred, labels.keypoints[idx])
