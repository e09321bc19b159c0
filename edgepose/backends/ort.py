"""ONNX Runtime backend (CPU; CUDA/TensorRT providers on a Jetson when present)."""

from __future__ import annotations

import logging

import numpy as np

from edgepose._optional import require
from edgepose.backends.base import Backend, TensorSpec
from edgepose.errors import ModelLoadError

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8, "tensor(bool)": np.bool_,
}


def _dims(shape) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


class OrtBackend(Backend):
    """Runs ``.onnx`` files with onnxruntime.

    Args (besides :class:`Backend`'s):
        providers: execution providers in priority order; None = CPU only. On a Jetson pass
            ``["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]``;
            providers not available in this onnxruntime build are dropped with a log line. An
            entry may be ``(name, options_dict)``, e.g. ``("TensorrtExecutionProvider",
            {"trt_fp16_enable": True, "trt_engine_cache_enable": True})``.
        spin: allow idle worker threads to spin (faster single stream, but distorts timings of
            other sessions in the same process; see docs/design.md pitfalls).
    """

    name = "ort"

    def __init__(self, model_path, *, num_threads=None, providers=None, spin: bool = True):
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.spin = spin
        super().__init__(model_path, num_threads=num_threads)

    def _load(self) -> None:
        ort = require("onnxruntime", "base", package="onnxruntime")
        opts = ort.SessionOptions()
        if self.num_threads is not None:
            opts.intra_op_num_threads = self.num_threads
            opts.inter_op_num_threads = 1
        if not self.spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        available = set(ort.get_available_providers())
        def pname(p):
            return p[0] if isinstance(p, (tuple, list)) else p

        providers = [p if not isinstance(p, list) else tuple(p) for p in self.providers if pname(p) in available]
        dropped = [pname(p) for p in self.providers if pname(p) not in available]
        if dropped:
            log.info("onnxruntime providers not available here, skipped: %s", ", ".join(dropped))
        if not providers:
            providers = ["CPUExecutionProvider"]
        try:
            self._sess = ort.InferenceSession(self.model_path, sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises several private exception types
            raise ModelLoadError(
                f"onnxruntime could not load {self.model_path!r}: the file is corrupted, truncated "
                f"or not an ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
            ) from exc
        self.active_providers = self._sess.get_providers()
        self.inputs = [TensorSpec(i.name, _dims(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                       for i in self._sess.get_inputs()]
        self.outputs = [TensorSpec(o.name, _dims(o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
                        for o in self._sess.get_outputs()]
        meta = self._sess.get_modelmeta()
        self.metadata = dict(meta.custom_metadata_map or {})
        self._out_names = [o.name for o in self.outputs]

    def _run(self, feeds):
        values = self._sess.run(self._out_names, feeds)
        return dict(zip(self._out_names, values))

    def _close(self) -> None:
        self._sess = None
