"""LiteRT backend for ``.tflite`` files.

Uses ``ai-edge-litert``; where only ``tflite-runtime`` is installed (older Raspberry Pi OS that
pins NumPy 1.x) it falls back to that, and says so in the log.
"""

from __future__ import annotations

import importlib
import json
import logging
import zipfile

import numpy as np

from edgepose.backends.base import Backend, TensorSpec
from edgepose.errors import MissingDependencyError, ModelLoadError

log = logging.getLogger(__name__)

#: Where the Interpreter class lives, in order of preference.
INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def load_interpreter_class(modules=INTERPRETER_MODULES):
    """Return the first importable ``Interpreter`` class among ``modules``.

    Raises:
        MissingDependencyError: none imports; the message lists each failure and the fix.
    """
    failures = []
    for mod in modules:
        try:
            return importlib.import_module(mod).Interpreter, mod
        except Exception as exc:  # ImportError, or NumPy-ABI errors from tflite-runtime
            failures.append(f"{mod}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise MissingDependencyError(
        "no LiteRT interpreter could be imported (" + "; ".join(failures) + "). Install it with: "
        "pip install 'edgepose[tflite]' (ai-edge-litert); on an OS that pins NumPy 1.x use "
        "tflite-runtime with numpy<2."
    )


def read_tflite_metadata(path: str) -> dict[str, str]:
    """Read edgepose metadata embedded in a ``.tflite`` file (a zip appended by our exporter).

    Returns an empty dict for files without it (e.g. MoveNet, BlazePose).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            if "edgepose.json" in zf.namelist():
                return {k: str(v) if not isinstance(v, str) else v
                        for k, v in json.loads(zf.read("edgepose.json")).items()}
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    return {}


class LiteRTBackend(Backend):
    """Runs ``.tflite`` files with the LiteRT interpreter (XNNPACK on CPU)."""

    name = "litert"

    def _load(self) -> None:
        cls, self.runtime_module = load_interpreter_class()
        if self.runtime_module != INTERPRETER_MODULES[0]:
            log.warning("ai-edge-litert not importable; using fallback %s", self.runtime_module)
        with open(self.model_path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise ModelLoadError(
                f"{self.model_path!r} is not a TFLite flatbuffer (missing 'TFL3' identifier at "
                "byte 4): the file is corrupted, truncated or of another format"
            )
        try:
            self._it = cls(model_path=self.model_path, num_threads=self.num_threads)
            self._it.allocate_tensors()
        except Exception as exc:
            raise ModelLoadError(
                f"LiteRT could not load {self.model_path!r}: the file is corrupted or truncated "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''})"
            ) from exc
        ins = self._it.get_input_details()
        outs = self._it.get_output_details()
        self._in_idx = {d["name"]: d["index"] for d in ins}
        self._out_idx = {d["name"]: d["index"] for d in outs}
        self.inputs = [TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"])) for d in ins]
        self.outputs = [TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"])) for d in outs]
        self.metadata = read_tflite_metadata(self.model_path)

    def _run(self, feeds):
        for name, arr in feeds.items():
            self._it.set_tensor(self._in_idx[name], arr)
        self._it.invoke()
        return {name: self._it.get_tensor(i) for name, i in self._out_idx.items()}

    def _close(self) -> None:
        self._it = None
