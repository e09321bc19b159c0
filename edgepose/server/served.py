"""Models the server hosts: a pose model card (image in, keypoints out) or a raw ONNX graph.

A served model declares KServe V2 metadata (inputs/outputs with datatype and shape, -1 for a
dynamic axis) and implements ``infer(inputs, parameters) -> outputs``. Validation errors are
:class:`~edgepose.protocol.ProtocolError` (HTTP 400) naming the tensor.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from typing import Any, Iterator

import numpy as np

from edgepose._optional import require
from edgepose.protocol import IMAGE, IMAGE_BYTES, KEYPOINTS, DeadlineExceededError, ProtocolError, v2_datatype

log = logging.getLogger(__name__)

#: Input tensor names of the pose contract.

#: Largest image side accepted (a person crop; larger is a misuse of the offload path).
MAX_SIDE = 4096


class ServedModel:
    """Base class of served models."""

    name = "model"
    version = "1"
    platform = "edgepose"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "versions": [self.version], "platform": self.platform,
                "inputs": self.inputs(), "outputs": self.outputs()}

    def inputs(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def outputs(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("edgepose_request_deadline", default=None)


@contextlib.contextmanager
def request_deadline(deadline: float | None) -> Iterator[None]:
    """Within the block, :func:`current_deadline` is ``deadline`` (a ``time.perf_counter()``
    value, None: none). The server wraps ``model.infer`` in it; a model that runs a batch in
    parts checks it between parts (:func:`check_deadline`) and is cut off with a 504."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The deadline of the request being served in this thread (None: none)."""
    return _DEADLINE.get()


def check_deadline(done: int, total: int) -> None:
    """Raise :class:`DeadlineExceededError` (HTTP 504) when the request's deadline has passed
    after ``done`` of ``total`` batch items."""
    deadline = current_deadline()
    if deadline is not None and time.perf_counter() > deadline:
        raise DeadlineExceededError(f"deadline_ms passed after {done} of {total} batch items; the rest were "
                                    "not run (send fewer items per request or a longer deadline_ms)")


def _decode_images(arr: np.ndarray) -> list[np.ndarray]:
    cv2 = require("cv2", "base", package="opencv-python-headless")
    if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[1] != 1) or arr.size == 0:
        raise ProtocolError(f"input {IMAGE_BYTES!r} must have shape [N] or [N, 1] with N >= 1, got {list(arr.shape)}")
    out = []
    for i, b in enumerate(arr.reshape(-1)):
        buf = np.frombuffer(b, dtype=np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if img is None:
            raise ProtocolError(f"input {IMAGE_BYTES!r} element {i} is not a decodable JPEG/PNG image "
                                f"({buf.size} bytes)")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return out


def _check_image(img: np.ndarray, name: str, i: int) -> None:
    h, w = img.shape[:2]
    if not (8 <= h <= MAX_SIDE and 8 <= w <= MAX_SIDE):
        raise ProtocolError(f"input {name!r} element {i} is {w}x{h}; each side must be in [8, {MAX_SIDE}]")


class PoseServedModel(ServedModel):
    """Serves a pose model card on whole person crops.

    Each image is treated as one square-padded crop (the model card's full-frame ROI); the
    output keypoints are in that image's pixels, so a client maps them back with its own crop
    transform.

    Args:
        model: a loaded :class:`~edgepose.models.PoseModel`.
        name: the served name (default: the card's name).
    """

    platform = "edgepose_pose"

    def __init__(self, model, *, name: str | None = None):
        self.model = model
        self.name = name or model.name
        # ORT sessions are thread-safe; LiteRT interpreters are not.
        self._lock = threading.Lock() if getattr(model.backend, "name", "") != "ort" else None

    def inputs(self):
        return [{"name": IMAGE_BYTES, "datatype": "BYTES", "shape": [-1], "optional": True},
                {"name": IMAGE, "datatype": "UINT8", "shape": [-1, -1, -1, 3], "optional": True}]

    def outputs(self):
        return [{"name": KEYPOINTS, "datatype": "FP32", "shape": [-1, 17, 3]}]

    def warmup(self) -> None:
        """Run once on a blank crop so the first real request does not pay session start-up."""
        cv2 = require("cv2", "base", package="opencv-python-headless")
        w, h = self.model.input_size
        blank = np.zeros((1, h, w, 3), np.uint8)
        jpg = np.empty(1, dtype=object)
        jpg[0] = cv2.imencode(".jpg", blank[0])[1].tobytes()
        for _ in range(2):  # the second run is the first at steady state on some runtimes
            self.infer({IMAGE: blank}, {})
            self.infer({IMAGE_BYTES: jpg}, {})

    def infer(self, inputs, parameters):
        """Checks the request deadline between crops: a batch that outlives it is cut off (504)."""
        from edgepose.models._crop import Roi

        unknown = sorted(set(inputs) - {IMAGE, IMAGE_BYTES})
        if unknown:
            raise ProtocolError(f"unknown input {unknown[0]!r} for model {self.name!r}; "
                                f"valid inputs: {IMAGE_BYTES} (BYTES [N]) or {IMAGE} (UINT8 [N,H,W,3])")
        if len(inputs) != 1:
            raise ProtocolError(f"model {self.name!r} takes exactly one of {IMAGE_BYTES!r} or {IMAGE!r}, "
                                f"got {len(inputs)} inputs")
        if IMAGE_BYTES in inputs:
            arr = inputs[IMAGE_BYTES]
            if arr.dtype != object:
                raise ProtocolError(f"input {IMAGE_BYTES!r} must be BYTES, got {v2_datatype(arr.dtype)}")
            images, name = _decode_images(arr), IMAGE_BYTES
        else:
            arr = inputs[IMAGE]
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3 or arr.shape[0] < 1:
                raise ProtocolError(f"input {IMAGE!r} must be UINT8 [N, H, W, 3] with N >= 1, got "
                                    f"{v2_datatype(arr.dtype)} {list(arr.shape)}")
            images, name = list(arr), IMAGE
        for i, img in enumerate(images):
            _check_image(img, name, i)
        out = np.zeros((len(images), 17, 3), dtype=np.float32)
        for i, img in enumerate(images):
            if i:
                check_deadline(i, len(images))
            img = np.ascontiguousarray(img)
            roi = Roi.full_frame(img.shape[1], img.shape[0])
            if self._lock is None:
                est = self.model.estimate(img, roi)
            else:
                with self._lock:
                    est = self.model.estimate(img, roi)
            out[i, :, :2] = est.keypoints
            out[i, :, 2] = est.scores
        return {KEYPOINTS: out}

    def close(self):
        self.model.close()


class OnnxServedModel(ServedModel):
    """Serves a raw ONNX graph (a Triton-exported model, the tail half of a split model).

    Inputs are checked against the graph's names, datatypes and static dimensions before the
    session runs, so a mismatch is a 400 naming the tensor, not a 500.

    Args:
        path: the ``.onnx`` file.
        name: the served name.
        num_threads: intra-op threads.
    """

    platform = "onnxruntime_onnx"
    #: with a deadline, a batch on a dynamic dimension 0 runs in parts of this many items
    deadline_chunk = 4

    def __init__(self, path, *, name: str, num_threads: int | None = None):
        from edgepose.backends.ort import OrtBackend

        self.backend = OrtBackend(path, num_threads=num_threads)
        self.name = name

    @staticmethod
    def _spec(s):
        return {"name": s.name, "datatype": v2_datatype(s.dtype), "shape": [-1 if d is None else d for d in s.shape]}

    def inputs(self):
        return [self._spec(s) for s in self.backend.inputs]

    def outputs(self):
        return [self._spec(s) for s in self.backend.outputs]

    def infer(self, inputs, parameters):
        """Under a request deadline, a batch on a dynamic dimension 0 runs in parts of
        ``deadline_chunk`` items, the deadline checked between parts (504 when it passes)."""
        from edgepose.errors import InputSpecError

        try:
            self.backend.check_feeds(inputs)
        except InputSpecError as exc:
            raise ProtocolError(str(exc)) from None
        sizes = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        n = next(iter(sizes)) if len(sizes) == 1 else -1
        dynamic = all(s.shape and s.shape[0] is None for s in self.backend.inputs)
        if current_deadline() is None or not dynamic or n <= self.deadline_chunk:
            return self.backend.run(inputs)
        parts = []
        for i in range(0, n, self.deadline_chunk):
            if i:
                check_deadline(i, n)
            parts.append(self.backend.run({k: v[i:i + self.deadline_chunk] for k, v in inputs.items()}))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def close(self):
        self.backend.close()
