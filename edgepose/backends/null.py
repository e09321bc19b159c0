"""A backend that runs no model: it returns fixed or computed outputs. For tests."""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgepose.backends.base import Backend, TensorSpec


class NullBackend(Backend):
    """Returns ``fn(feeds)`` (or fixed ``outputs``) with the given specs; loads no file.

    Args:
        inputs: input specs the feeds are checked against.
        outputs: output name -> fixed array, used when ``fn`` is None.
        fn: feeds -> outputs, to compute outputs from inputs.
        metadata: model metadata a model card can read.
    """

    name = "null"

    def __init__(self, *, inputs: list[TensorSpec], outputs: dict[str, np.ndarray] | None = None,
                 fn: Callable[[dict], dict] | None = None, metadata: dict[str, str] | None = None,
                 num_threads: int | None = None):
        self.model_path = "<null>"
        self.num_threads = num_threads
        self.inputs = list(inputs)
        self._fixed = dict(outputs or {})
        self._fn = fn
        self.outputs = [TensorSpec(k, v.shape, v.dtype) for k, v in self._fixed.items()]
        self.metadata = dict(metadata or {})
        self._closed = False
        self.calls = 0

    def _run(self, feeds):
        self.calls += 1
        if self._fn is not None:
            return self._fn(feeds)
        return {k: v.copy() for k, v in self._fixed.items()}
