"""The backend interface: load a model file, run named tensors, close.

A backend does no pre- or post-processing: it checks tensors against the model's input specs
and runs them. Model cards (``edgepose.models``) do the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edgepose.errors import ConfigError, InputSpecError, ModelLoadError


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a dynamic axis) and numpy dtype of a model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {np.dtype(self.dtype).name}"


class Backend:
    """Base class of inference backends.

    Subclasses implement :meth:`_load`, :meth:`_run` and :meth:`_close`, and fill
    ``self.inputs`` / ``self.outputs`` (lists of :class:`TensorSpec`) in ``_load``.
    """

    name = "base"

    def __init__(self, model_path: str | os.PathLike, *, num_threads: int | None = None):
        """Load ``model_path``.

        Args:
            model_path: path of the model file.
            num_threads: intra-op threads; None lets the runtime choose (all cores).
        """
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError(f"num_threads must be a positive int or None, got {num_threads!r}")
        self.model_path = os.fspath(model_path)
        self.num_threads = num_threads
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.metadata: dict[str, str] = {}
        self._closed = False
        if not os.path.isfile(self.model_path):
            raise ModelLoadError(
                f"model file not found: {self.model_path!r}. Check the path, or run "
                "'edgepose models' to list the model names edgepose can locate."
            )
        self._load()

    # -- subclass hooks -------------------------------------------------------------------
    def _load(self) -> None:
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    # -- public API -------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (input name -> array) and return output name -> array."""
        if self._closed:
            raise ModelLoadError(f"backend for {self.model_path!r} is closed; create a new one")
        self.check_feeds(feeds)
        return self._run(feeds)

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        """Raise :class:`InputSpecError` unless ``feeds`` matches the input specs exactly."""
        expected = {s.name: s for s in self.inputs}
        unknown = [k for k in feeds if k not in expected]
        if unknown:
            raise InputSpecError(
                f"unknown input tensor {unknown[0]!r} for model {self.model_path!r}; "
                f"expected inputs: {', '.join(s.describe() for s in self.inputs)}"
            )
        for spec in self.inputs:
            if spec.name not in feeds:
                raise InputSpecError(
                    f"missing input tensor {spec.name!r} for model {self.model_path!r}; "
                    f"expected {spec.describe()}"
                )
            arr = feeds[spec.name]
            if not isinstance(arr, np.ndarray):
                raise InputSpecError(
                    f"input tensor {spec.name!r} must be a numpy array, got {type(arr).__name__}"
                )
            if arr.dtype != spec.dtype:
                raise InputSpecError(
                    f"input tensor {spec.name!r} has dtype {arr.dtype.name}, expected "
                    f"{np.dtype(spec.dtype).name} ({spec.describe()}); convert with "
                    f".astype(np.{np.dtype(spec.dtype).name})"
                )
            if len(arr.shape) != len(spec.shape) or any(
                d is not None and d != a for d, a in zip(spec.shape, arr.shape)
            ):
                raise InputSpecError(
                    f"input tensor {spec.name!r} has shape {list(arr.shape)}, expected "
                    f"{spec.describe()}"
                )

    def close(self) -> None:
        """Release the runtime session. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_path!r}, num_threads={self.num_threads})"
