"""Export a temporal model to ONNX and verify it against the torch model (design rule 8).

The file carries its provenance in ONNX metadata, which the runtime reads back:
``edgepose.kind`` (smoother / recovery), ``edgepose.window``, ``edgepose.net`` (JSON config),
``edgepose.version``, ``edgepose.input`` (layout), ``edgepose.train`` (JSON recipe + losses),
``edgepose.parity_max_abs`` (the measured torch vs onnxruntime difference) and the range the
model was trained for: ``edgepose.max_delay`` (smoother) or ``edgepose.intervals`` (recovery).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from edgepose.errors import CompressionError

log = logging.getLogger(__name__)

#: Largest |torch - onnxruntime| accepted on random normalised inputs (float32 rounding).
PARITY_ATOL = 1e-4


def example_input(model, channels: int = 34, *, seed: int = 0) -> torch.Tensor:
    t = model.cfg.window
    g = torch.Generator().manual_seed(seed)
    if model.kind == "smoother" and not getattr(model, "prior", False):
        return torch.randn(channels, t, generator=g) * 0.2
    x = torch.randn(channels, len(getattr(model, "inputs", "xy")), t, generator=g) * 0.2
    if model.kind == "recovery":
        x[:, 1] = (torch.arange(t) % 3 == (t - 1) % 3).float()
    return x


def parity(model, path: str | os.PathLike, *, channels=(1, 34, 340)) -> float:
    """Max |torch - onnxruntime| over random inputs with several channel counts."""
    import onnxruntime as ort

    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    model.eval()
    for i, c in enumerate(channels):
        x = example_input(model, c, seed=i)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def export_onnx(model, path: str | os.PathLike, *, extra_metadata: dict | None = None,
                limits: dict[str, str] | None = None) -> float:
    """Export ``model`` (SmoothNet / RecoveryNet) to ``path`` and check parity.

    Args:
        model: the trained module.
        path: the .onnx file to write.
        extra_metadata: training provenance, stored as JSON in ``edgepose.train``.
        limits: ``edgepose.max_delay`` / ``edgepose.intervals`` entries.

    Returns:
        The measured max abs difference torch vs onnxruntime.

    Raises:
        RuntimeError: when the difference exceeds :data:`PARITY_ATOL`.
    """
    import onnx

    from edgepose.version import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    x = example_input(model)
    prog = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], output_names=["y"],
                             dynamic_shapes={"x": {0: torch.export.Dim("channels", min=1, max=1 << 20)}})
    prog.save(os.fspath(path))
    m = onnx.load(os.fspath(path))
    onnx.checker.check_model(m)
    if getattr(model, "prior", False):
        layout = f"x [C, {len(model.inputs)}, T] ({', '.join(model.inputs)}) -> y [C, T]"
    elif model.kind == "smoother":
        layout = "x [C, T] normalised channels -> y [C, T]"
    else:
        layout = "x [C, 2, T] (interpolated channels, keyframe mask) -> y [C, T]"
    meta = {"edgepose.kind": model.kind, "edgepose.window": str(model.cfg.window),
            "edgepose.net": json.dumps(model.cfg.to_dict()), "edgepose.version": __version__,
            "edgepose.input": layout + "; channels = (pixels - window mean) / person size"}
    if getattr(model, "prior", False):
        meta["edgepose.inputs"] = ",".join(model.inputs)
    meta.update(limits or {})
    if extra_metadata:
        meta["edgepose.train"] = json.dumps(extra_metadata, default=str)
    del m.metadata_props[:]
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, os.fspath(path))  # one file: no external data for a model this small
    diff = parity(model, path)
    m = onnx.load(os.fspath(path))
    e = m.metadata_props.add()
    e.key, e.value = "edgepose.parity_max_abs", f"{diff:.3g}"
    onnx.save(m, os.fspath(path))
    log.info("exported %s (%d bytes), parity max |torch - ort| = %.2e", path, path.stat().st_size, diff)
    if not diff <= PARITY_ATOL:
        raise CompressionError(f"ONNX export of {model.kind} differs from torch by {diff:.3g} > {PARITY_ATOL}")
    return diff


def export_tflite(model, path: str | os.PathLike, *, extra_metadata: dict | None = None,
                  limits: dict[str, str] | None = None) -> float:
    """Export ``model`` to fp32 TFLite (litert-torch) for one window of 34 channels (the
    runtime runs more windows as consecutive calls), with the same ``edgepose.*`` metadata as
    :func:`export_onnx` in an ``edgepose.json`` zip appended to the flatbuffer.

    Returns:
        The measured max abs difference torch vs LiteRT on random windows.

    Raises:
        edgepose.errors.MissingDependencyError: litert-torch or ai-edge-litert is missing.
        RuntimeError: when the difference exceeds :data:`PARITY_ATOL`.
    """
    import zipfile

    from edgepose._optional import require
    from edgepose.version import __version__

    litert_torch = require("litert_torch", "compress", package="litert-torch")
    interpreter = require("ai_edge_litert.interpreter", "tflite", package="ai-edge-litert")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    litert_torch.convert(model, (example_input(model, 34),)).export(os.fspath(path))
    it = interpreter.Interpreter(model_path=os.fspath(path), num_threads=1)
    it.allocate_tensors()
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    diff = 0.0
    for seed in range(3):
        x = example_input(model, 34, seed=seed)
        it.set_tensor(i_in, x.numpy())
        it.invoke()
        with torch.no_grad():
            diff = max(diff, float(np.abs(it.get_tensor(i_out) - model(x).numpy()).max()))
    meta = {"edgepose.kind": model.kind, "edgepose.window": str(model.cfg.window),
            "edgepose.net": json.dumps(model.cfg.to_dict()), "edgepose.version": __version__,
            "edgepose.input": "one window: 34 channels (17 joints x (x, y)); (pixels - window mean) / person size",
            "edgepose.parity_max_abs": f"{diff:.3g}"}
    if getattr(model, "prior", False):
        meta["edgepose.inputs"] = ",".join(model.inputs)
    meta.update(limits or {})
    if extra_metadata:
        meta["edgepose.train"] = json.dumps(extra_metadata, default=str)
    with zipfile.ZipFile(path, "a") as zf:  # appended after the flatbuffer; LiteRT ignores it
        zf.writestr("edgepose.json", json.dumps(meta))
    log.info("exported %s (%d bytes), parity max |torch - litert| = %.2e", path, path.stat().st_size, diff)
    if not diff <= PARITY_ATOL:
        raise CompressionError(f"TFLite export of {model.kind} differs from torch by {diff:.3g} > {PARITY_ATOL}")
    return diff
