"""Triton Python backend of an edgepose pose model: copied verbatim as ``<repo>/<name>/1/model.py``.

It serves the pose contract of ``edgepose serve`` with a MoveNet SinglePose ONNX graph
(``pose.onnx`` beside this file) on onnxruntime:

* inputs (give one): ``image_bytes`` BYTES [N] (JPEG / PNG RGB person crops) or ``image`` UINT8
  [N, H, W, 3] (raw RGB crops, any size from 8 to 4096 pixels a side);
* output: ``keypoints`` FP32 [N, 17, 3]: x, y in the pixels of each crop, and score.

Each crop is padded to a square around its centre and resized to the model input, exactly as
``edgepose.models._crop.crop(img, Roi.full_frame(w, h), ...)`` does, so Triton and the embedded
server answer the same keypoints. The file needs only numpy, onnxruntime and OpenCV (imported
lazily: edgepose's own tests import it without Triton); it does not import edgepose, so the
repository runs on any Triton with the Python backend whose Python has those three packages.
"""

from __future__ import annotations

import json
import os

import numpy as np

#: Largest crop side accepted (the embedded server's MAX_SIDE).
MAX_SIDE = 4096
_ORT_DTYPES = {"tensor(int32)": np.int32, "tensor(float)": np.float32, "tensor(uint8)": np.uint8}


class RequestError(ValueError):
    """A request this model refuses (answered as a Triton error naming the tensor)."""


def square_crop(cv2, img: np.ndarray, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole image padded to a centred square and resized to ``out_w x out_h`` (bilinear).

    Returns the crop and the 2x3 image->crop matrix (continuous pixel coordinates).
    """
    h, w = img.shape[:2]
    side = float(max(w, h))
    x0, y0 = int(round(w / 2.0 - side / 2.0)), int(round(h / 2.0 - side / 2.0))
    bw = bh = max(1, int(round(side)))
    x1, y1 = x0 + bw, y0 + bh
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        src = img[y0:y1, x0:x1]
    else:
        src = np.zeros((bh, bw) + img.shape[2:], img.dtype)
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        src[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = img[iy0:iy1, ix0:ix1]
    out = cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    sx, sy = out_w / bw, out_h / bh
    return out, np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]])


def _invert(m: np.ndarray) -> np.ndarray:
    a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    tx, ty = m[0, 2], m[1, 2]
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]])


class Pose:
    """MoveNet SinglePose on onnxruntime: crops in, keypoints (x, y crop pixels, score) out."""

    def __init__(self, onnx_path: str, threads: int = 0, max_crops: int = 0):
        import cv2
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads > 0:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        self.cv2 = cv2
        self.max_crops = max_crops
        self.session = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        spec = self.session.get_inputs()[0]
        self.input_name, self.output_name = spec.name, self.session.get_outputs()[0].name
        self.dtype = _ORT_DTYPES.get(spec.type, np.float32)
        self.h, self.w = int(spec.shape[1]), int(spec.shape[2])

    def estimate(self, img: np.ndarray) -> np.ndarray:
        """(17, 3) float32 keypoints of one RGB uint8 crop."""
        patch, m = square_crop(self.cv2, np.ascontiguousarray(img), self.w, self.h)
        out = self.session.run([self.output_name], {self.input_name: patch[None].astype(self.dtype, copy=False)})[0]
        out = np.asarray(out, dtype=np.float32).reshape(17, 3)
        a = _invert(m)
        kps = out[:, 1::-1] @ (a[:, :2] * (float(self.w), float(self.h))).T + a[:, 2]
        res = np.empty((17, 3), np.float32)
        res[:, :2] = kps
        res[:, 2] = out[:, 2]
        return res

    def images(self, image: np.ndarray | None, image_bytes: np.ndarray | None) -> list[np.ndarray]:
        """The request's crops, checked like the embedded server does (:class:`RequestError`)."""
        if (image is None) == (image_bytes is None):
            raise RequestError("give exactly one of the inputs 'image_bytes' (BYTES [N]) or 'image' "
                               "(UINT8 [N, H, W, 3])")
        given = image if image is not None else image_bytes
        n = given.shape[0] if given.ndim else 0
        if self.max_crops and n > self.max_crops:
            raise RequestError(f"{n} crops in one request; this model takes at most {self.max_crops} "
                               "(send fewer per request)")
        if image is not None:
            if image.dtype != np.uint8 or image.ndim != 4 or image.shape[3] != 3 or image.shape[0] < 1:
                raise RequestError(f"input 'image' must be UINT8 [N, H, W, 3] with N >= 1, got {image.dtype} "
                                   f"{list(image.shape)}")
            imgs, name = list(image), "image"
        else:
            flat = image_bytes.reshape(-1)
            if flat.size == 0:
                raise RequestError("input 'image_bytes' is empty")
            imgs, name = [], "image_bytes"
            for i, b in enumerate(flat):
                buf = np.frombuffer(b, dtype=np.uint8)
                dec = self.cv2.imdecode(buf, self.cv2.IMREAD_COLOR) if buf.size else None
                if dec is None:
                    raise RequestError(f"input 'image_bytes' element {i} is not a decodable JPEG/PNG image "
                                       f"({buf.size} bytes)")
                imgs.append(self.cv2.cvtColor(dec, self.cv2.COLOR_BGR2RGB))
        for i, img in enumerate(imgs):
            h, w = img.shape[:2]
            if not (8 <= h <= MAX_SIDE and 8 <= w <= MAX_SIDE):
                raise RequestError(f"input {name!r} element {i} is {w}x{h}; each side must be in [8, {MAX_SIDE}]")
        return imgs

    def infer(self, image: np.ndarray | None = None, image_bytes: np.ndarray | None = None) -> np.ndarray:
        """``keypoints`` [N, 17, 3] of one request."""
        imgs = self.images(image, image_bytes)
        return np.stack([self.estimate(img) for img in imgs]).astype(np.float32)


class TritonPythonModel:
    """The Triton Python backend entry points (``initialize`` / ``execute`` / ``finalize``).

    With dynamic batching Triton hands ``execute`` several requests at once; each gets its own
    response (a bad request is answered with its error, the others are unaffected).
    """

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        threads = int(params.get("intra_op_threads", {}).get("string_value", "0") or 0)
        max_crops = int(params.get("max_crops", {}).get("string_value", "0") or 0)
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.pose = Pose(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pose.onnx"), threads,
                         0 if self.batched else max_crops)

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            tensors = {}
            for name in ("image", "image_bytes"):
                t = pb_utils.get_input_tensor_by_name(request, name)
                tensors[name] = None if t is None else t.as_numpy()
            try:
                kps = self.pose.infer(**tensors)
            except RequestError as exc:
                code = getattr(pb_utils.TritonError, "INVALID_ARG", None)  # HTTP 400 (older Tritons: 500)
                err = pb_utils.TritonError(str(exc)) if code is None else pb_utils.TritonError(str(exc), code)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=err))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("keypoints", kps)]))
        return responses

    def finalize(self):
        self.pose = None
