"""MoveNet SinglePose (Lightning / Thunder) model card, TFLite (uint8) and ONNX (int32) files."""

from __future__ import annotations

import time

import numpy as np

from edgepose.backends.base import Backend
from edgepose.errors import ModelLoadError
from edgepose.models._crop import Roi, crop, invert_affine
from edgepose.models.base import Estimate, PoseModel


def decode_movenet(output: np.ndarray, crop_to_frame: np.ndarray, input_size: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Decode MoveNet's ``[1, 1, 17, 3]`` (y, x, score; normalised to the crop) output.

    Args:
        output: the raw output tensor.
        crop_to_frame: 2x3 affine from crop coordinates to frame coordinates.
        input_size: (w, h) of the model input.

    Returns:
        ``(keypoints (17, 2) float32 frame px, scores (17,) float32)``.
    """
    out = np.asarray(output, dtype=np.float32).reshape(17, 3)
    w, h = input_size
    a = np.asarray(crop_to_frame, dtype=np.float64)
    # One product per frame (this runs inside the <= 10 % overhead budget): the model's (y, x)
    # columns, reversed to (x, y), times the crop->frame matrix with the input size folded in.
    kps = out[:, 1::-1] @ (a[:, :2] * (float(w), float(h))).T + a[:, 2]
    return kps.astype(np.float32), out[:, 2].copy()


class MoveNet(PoseModel):
    """MoveNet SinglePose. The input is the square crop as uint8 (TFLite) or int32 (ONNX) RGB.

    Video tracking follows the official tfjs pipeline: the first frame (or a lost pose) runs on
    the full frame padded to a square; later crops come from the previous keypoints.
    """

    keypoint_format = "coco17"

    def __init__(self, backend: Backend, *, name: str = "movenet"):
        super().__init__(backend)
        self.name = name
        if len(backend.inputs) != 1:
            raise ModelLoadError(
                f"{backend.model_path!r} has {len(backend.inputs)} inputs; a MoveNet SinglePose "
                "model has exactly one [1, H, W, 3] image input"
            )
        spec = backend.inputs[0]
        if len(spec.shape) != 4 or spec.shape[3] != 3 or spec.dtype not in (np.uint8, np.int32, np.float32):
            raise ModelLoadError(
                f"{backend.model_path!r} input {spec.describe()} is not a MoveNet input "
                "([1, H, W, 3] uint8, int32 or float32)"
            )
        self._in = spec
        self._out = backend.outputs[0].name
        self.input_size = (int(spec.shape[2]), int(spec.shape[1]))

    def estimate(self, frame: np.ndarray, roi: Roi) -> Estimate:
        # Plain perf_counter stamps, not StageTimer: this path runs every frame inside the
        # runtime-overhead budget (<= 10 % of the Lightning int8 invoke).
        w, h = self.input_size
        t0 = time.perf_counter()
        img, m = crop(frame, roi, w, h)
        feed = img[None].astype(self._in.dtype, copy=False)
        t1 = time.perf_counter()
        out = self.backend.run({self._in.name: feed})[self._out]
        t2 = time.perf_counter()
        kps, scores = decode_movenet(out, invert_affine(m), self.input_size)
        score = float(scores.sum()) / scores.size
        t3 = time.perf_counter()
        return Estimate(kps, scores, roi, score, timings_ms={
            "preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3})
