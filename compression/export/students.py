"""Export a :class:`StudentNet` to ONNX or TFLite that the runtime's student card loads.

Both formats carry the ``edgepose.*`` metadata ``edgepose.models.student`` reads (card, head,
keypoint format, input layout, mean / std in 0-255 units, output role -> tensor name, SimCC split)
plus provenance (version, architecture config, training notes). ONNX keeps it in
``metadata_props``; TFLite in an ``edgepose.json`` zip appended to the flatbuffer (what
``edgepose.backends.litert.read_tflite_metadata`` reads). Every export runs the file in its
runtime on real or random inputs and compares with torch; it fails above the stated tolerance.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .onnx_export import cpu_session, save_checked, sha256_of
from ..students.cnn import OUTPUTS, StudentDeploy, StudentNet
from edgepose.errors import CompressionError, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudentExportConfig:
    """Options of :func:`export_onnx_student` / :func:`export_tflite_student`.

    Attributes:
        opset: ONNX opset (18: torch 2.13's dynamo exporter's native target).
        parity_tol: largest allowed absolute difference of any output torch vs runtime (outputs
            are probabilities, logits or crop-normalised coordinates: 1e-3 is far below a pixel).
        check_inputs: inputs the parity check runs (the given crops first, then random ones).
    """

    opset: int = 18
    parity_tol: float = 1e-3
    check_inputs: int = 4
    version: int = 1

    def __post_init__(self):
        if self.parity_tol <= 0:
            raise ConfigError(f"StudentExportConfig.parity_tol must be > 0, got {self.parity_tol!r}")
        if self.check_inputs < 1:
            raise ConfigError(f"StudentExportConfig.check_inputs must be >= 1, got {self.check_inputs!r}")


@dataclass
class StudentExportResult:
    """What was written and how well it matches torch.

    Attributes:
        path: the model file.
        format: ``onnx`` or ``tflite``.
        sha256: its checksum.
        bytes: its size.
        max_abs: largest absolute output difference torch vs runtime.
        max_px: largest decoded keypoint difference, in input pixels.
        metadata: the embedded ``edgepose.*`` metadata.
    """

    path: str
    format: str
    sha256: str
    bytes: int
    max_abs: float
    max_px: float
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def student_metadata(net: StudentNet, output_names: dict[str, str], provenance: dict | None = None
                     ) -> dict[str, str]:
    """The ``edgepose.*`` metadata of ``net`` (``output_names``: role -> tensor name in the file)."""
    from edgepose.version import __version__

    cfg = net.cfg
    meta = {
        "edgepose.card": "student",
        "edgepose.head": cfg.head,
        "edgepose.keypoint_format": "coco17",
        "edgepose.input_layout": "NCHW",
        "edgepose.mean": json.dumps([float(v) for v in cfg.mean]),
        "edgepose.std": json.dumps([float(v) for v in cfg.std]),
        "edgepose.outputs": json.dumps(output_names),
        "edgepose.version": __version__,
        "edgepose.student_config": cfg.to_json(),
        "edgepose.provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    if cfg.head == "simcc":
        meta["edgepose.simcc_split"] = str(float(cfg.simcc_split))
    return meta


def _check_inputs(net: StudentNet, crops, n: int) -> list[np.ndarray]:
    s = net.cfg.input_size
    mean = np.asarray(net.cfg.mean, np.float32)
    std = np.asarray(net.cfg.std, np.float32)
    rng = np.random.default_rng(0)
    imgs = [np.asarray(c, np.uint8) for c in (crops or [])][:n]
    while len(imgs) < n:
        imgs.append(rng.integers(0, 256, size=(s, s, 3), dtype=np.uint8))
    for c in imgs:
        if c.shape != (s, s, 3):
            raise ConfigError(f"check crop shape {c.shape} != ({s}, {s}, 3): crop to the student's input size")
    return [((c.astype(np.float32) - mean) / std).transpose(2, 0, 1)[None].copy() for c in imgs]


def _decode(head: str, outs: list[np.ndarray], net: StudentNet) -> np.ndarray:
    from edgepose.models.student import decode_heatmaps, decode_rle, decode_simcc

    size = net.input_size
    if head == "heatmap":
        return decode_heatmaps(outs[0][0], size)[0]
    if head == "simcc":
        return decode_simcc(outs[0][0], outs[1][0], net.cfg.simcc_split)[0]
    return decode_rle(outs[0][0], outs[1][0], size)[0]


def _compare(net: StudentNet, deploy, inputs, run) -> tuple[float, float]:
    max_abs = max_px = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = deploy(torch.from_numpy(x))
        ref = [t.numpy() for t in (ref if isinstance(ref, tuple) else (ref,))]
        got = run(x)
        max_abs = max(max_abs, max(float(np.abs(g - r).max()) for g, r in zip(got, ref)))
        d = _decode(net.cfg.head, got, net) - _decode(net.cfg.head, ref, net)
        max_px = max(max_px, float(np.abs(d).max()))
    return max_abs, max_px


def _finish(path: Path, fmt: str, max_abs: float, max_px: float, meta: dict, cfg: StudentExportConfig):
    if max_abs > cfg.parity_tol:
        raise CompressionError(f"{fmt} export differs from torch by {max_abs:.2e} (> parity_tol={cfg.parity_tol}); "
                           f"the file is at {str(path)!r} for inspection")
    log.info("exported %s (%d bytes): max |diff| %.2e, max keypoint diff %.3f px", path,
             os.path.getsize(path), max_abs, max_px)
    return StudentExportResult(os.fspath(path), fmt, sha256_of(path), os.path.getsize(path), max_abs, max_px, meta)


def export_onnx_student(net: StudentNet, path: str | os.PathLike, cfg: StudentExportConfig = StudentExportConfig(),
                        *, check_crops: list[np.ndarray] | None = None, provenance: dict | None = None
                        ) -> StudentExportResult:
    """Export ``net`` to ONNX (input ``image`` NCHW float), check it, embed metadata.

    Args:
        net: the trained student (put in eval mode here).
        path: output ``.onnx``.
        cfg: options.
        check_crops: real (S, S, 3) uint8 crops for the parity check.
        provenance: what the model was trained on / how (stored as JSON).

    Raises:
        RuntimeError: the ONNX checker fails or parity is worse than ``cfg.parity_tol``.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deploy = StudentDeploy(net.eval()).eval()
    s = net.cfg.input_size
    names = list(OUTPUTS[net.cfg.head])
    with tempfile.TemporaryDirectory(prefix="edgepose-student-") as tmp:
        tmp_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(deploy, (torch.zeros(1, 3, s, s),), tmp_path, dynamo=True, opset_version=cfg.opset,
                          input_names=["image"], output_names=names, verbose=False)
        model = onnx.load(tmp_path)
    meta = student_metadata(net, {n: n for n in names}, provenance)
    save_checked(model, meta, path)
    sess = cpu_session(path, threads=1)
    max_abs, max_px = _compare(net, deploy, _check_inputs(net, check_crops, cfg.check_inputs),
                               lambda x: sess.run(names, {"image": x}))
    return _finish(path, "onnx", max_abs, max_px, meta, cfg)


def _tflite_output_names(interp, n: int) -> list[str]:
    """Tensor names of the default signature's outputs ``output_0 .. output_{n-1}``, in that order."""
    details = interp.get_signature_runner().get_output_details()  # {"output_0": {"name", "index", ...}}
    if len(details) != n:
        raise CompressionError(f"the TFLite signature has {len(details)} outputs, expected {n}")
    return [details[f"output_{i}"]["name"] for i in range(n)]


def export_tflite_student(net: StudentNet, path: str | os.PathLike,
                          cfg: StudentExportConfig = StudentExportConfig(), *,
                          check_crops: list[np.ndarray] | None = None, provenance: dict | None = None
                          ) -> StudentExportResult:
    """Export ``net`` to fp32 TFLite with litert-torch, check it in LiteRT, append metadata.

    Raises:
        edgepose.errors.MissingDependencyError: litert-torch or ai-edge-litert is not installed.
        RuntimeError: parity is worse than ``cfg.parity_tol``.
    """
    from edgepose._optional import require

    litert_torch = require("litert_torch", "compress", package="litert-torch")
    interpreter = require("ai_edge_litert.interpreter", "tflite", package="ai-edge-litert")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deploy = StudentDeploy(net.eval()).eval()
    s = net.cfg.input_size
    litert_torch.convert(deploy, (torch.zeros(1, 3, s, s),)).export(os.fspath(path))
    interp = interpreter.Interpreter(model_path=os.fspath(path), num_threads=1)
    interp.allocate_tensors()
    roles = list(OUTPUTS[net.cfg.head])
    tensor_names = _tflite_output_names(interp, len(roles))
    by_name = {d["name"]: d["index"] for d in interp.get_output_details()}
    in_idx = interp.get_input_details()[0]["index"]

    def run(x):
        interp.set_tensor(in_idx, x)
        interp.invoke()
        return [interp.get_tensor(by_name[t]).copy() for t in tensor_names]

    max_abs, max_px = _compare(net, deploy, _check_inputs(net, check_crops, cfg.check_inputs), run)
    meta = student_metadata(net, dict(zip(roles, tensor_names)), provenance)
    with zipfile.ZipFile(path, "a") as zf:  # appended after the flatbuffer; LiteRT ignores it
        zf.writestr("edgepose.json", json.dumps(meta))
    return _finish(path, "tflite", max_abs, max_px, meta, cfg)


__all__ = ["StudentExportConfig", "StudentExportResult", "student_metadata", "export_onnx_student",
           "export_tflite_student"]
