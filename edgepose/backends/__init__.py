"""Inference backends, picked by name or by model file extension.

``list_backends()`` names them; ``open_backend(path)`` chooses by extension (``.onnx`` -> ort,
``.tflite`` -> litert) unless ``backend=`` is given.
"""

from __future__ import annotations

import os

from edgepose.backends.base import Backend, TensorSpec
from edgepose.errors import ModelLoadError, unknown_name

_EXT = {".onnx": "ort", ".tflite": "litert"}


def _registry() -> dict[str, type[Backend]]:
    from edgepose.backends.litert import LiteRTBackend
    from edgepose.backends.null import NullBackend
    from edgepose.backends.ort import OrtBackend

    return {"ort": OrtBackend, "litert": LiteRTBackend, "null": NullBackend}


def list_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(_registry())


def backend_for_path(path: str | os.PathLike) -> str:
    """The backend name for a model file's extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _EXT:
        raise ModelLoadError(
            f"cannot tell the runtime for {os.fspath(path)!r}: extension {ext!r} is not one of "
            f"{', '.join(sorted(_EXT))}; rename the file or pass backend=..."
        )
    return _EXT[ext]


def open_backend(path: str | os.PathLike, *, backend: str | None = None, **kwargs) -> Backend:
    """Open ``path`` with ``backend`` (default: by file extension)."""
    name = backend or backend_for_path(path)
    reg = _registry()
    if name not in reg or name == "null":
        raise unknown_name("backend", name, [n for n in reg if n != "null"])
    return reg[name](path, **kwargs)


__all__ = ["Backend", "TensorSpec", "list_backends", "open_backend", "backend_for_path"]
