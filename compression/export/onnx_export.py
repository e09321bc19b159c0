"""Export an imported / compressed MoveNet to ONNX that verifies itself and carries provenance.

The file reads like the official MoveNet ONNX (``[1, H, W, 3]`` int32 RGB in, ``[1, 1, 17, 3]``
(y, x, score) out), so :func:`edgepose.models.load_model` runs it with the MoveNet card. Metadata
keys are prefixed ``edgepose.`` and come back through ``OrtBackend.metadata``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..importer.movenet import MoveNetDeploy, MoveNetTorch
from edgepose.errors import CompressionError, ConfigError
from edgepose._hash import sha256_file as sha256_of

log = logging.getLogger(__name__)

#: Version of the metadata layout written by :func:`export_onnx`.
METADATA_VERSION = "1"


@dataclass(frozen=True)
class ExportConfig:
    """Options of :func:`export_onnx`.

    Attributes:
        opset: ONNX opset (18: what torch 2.13's dynamo exporter targets natively; ORT >= 1.17 runs it).
        card: model card the runtime reads the file with (``edgepose.card``). The MoveNet card's
            decoder is input-size independent, so students keep MoveNet's card.
        parity_tol_px: largest allowed keypoint difference (input px) between torch and ONNX
            Runtime on the check inputs; export fails above it.
        check_inputs: how many random + provided inputs the parity check runs.
    """

    opset: int = 18
    card: str = "movenet-lightning-fp32"
    parity_tol_px: float = 0.5
    check_inputs: int = 4
    version: int = 1

    def __post_init__(self):
        if self.parity_tol_px <= 0:
            raise ConfigError(f"ExportConfig.parity_tol_px must be > 0, got {self.parity_tol_px!r}")
        if self.check_inputs < 1:
            raise ConfigError(f"ExportConfig.check_inputs must be >= 1, got {self.check_inputs!r}")


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how well it matches torch.

    Attributes:
        path: the ``.onnx`` file.
        sha256: its checksum.
        max_px: largest keypoint (y, x) difference torch vs ONNX Runtime, in input pixels.
        max_score: largest score difference.
        metadata: the ``edgepose.*`` metadata embedded.
    """

    path: str
    sha256: str
    max_px: float
    max_score: float
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def build_metadata(net: MoveNetTorch, cfg: ExportConfig, compression: dict | None = None) -> dict[str, str]:
    """The ``edgepose.*`` metadata describing ``net``."""
    from edgepose.version import __version__

    w, h = net.input_size
    return {
        "edgepose.metadata_version": METADATA_VERSION,
        "edgepose.card": cfg.card,
        "edgepose.version": __version__,
        "edgepose.keypoint_format": "coco17",
        "edgepose.decoder": "movenet",
        "edgepose.input": json.dumps({"name": "input", "shape": [1, h, w, 3], "dtype": "int32",
                                      "layout": "NHWC", "colour": "RGB", "range": [0, 255]}),
        "edgepose.input_normalisation": json.dumps({"scale": [float(v) for v in net.scale.flatten()],
                                                    "shift": [float(v) for v in net.shift.flatten()]}),
        "edgepose.source_sha256": net.source_sha256,
        "edgepose.source_name": net.name,
        "edgepose.compression": json.dumps(compression or {}, sort_keys=True),
    }


def set_metadata(model, meta: dict[str, str]) -> None:
    """Replace / add ``metadata_props`` entries of an ``onnx.ModelProto``."""
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)


def save_checked(proto, meta: dict, path, *, what: str = "ONNX") -> None:
    """Embed ``meta``, run the ONNX checker (a failure is a :class:`CompressionError`), save to ``path``."""
    import onnx

    set_metadata(proto, meta)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise CompressionError(f"exported {what} failed the checker: {exc}") from exc
    onnx.save(proto, os.fspath(path))


def cpu_session(path, *, threads: int | None = None):
    """A quiet ONNX Runtime CPU session on ``path`` (the parity checks of every exporter)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def _run_ort(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def parity(path, deploy: torch.nn.Module, inputs: list[np.ndarray], size: int) -> tuple[float, float]:
    """Largest (keypoint px, score) difference between ``deploy`` in torch and ``path`` in ORT."""
    max_px = max_sc = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = deploy(torch.from_numpy(x)).numpy().reshape(17, 3)
        got = _run_ort(path, x).reshape(17, 3)
        max_px = max(max_px, float(np.abs(got[:, :2] - ref[:, :2]).max() * size))
        max_sc = max(max_sc, float(np.abs(got[:, 2] - ref[:, 2]).max()))
    return max_px, max_sc


def export_onnx(net: MoveNetTorch, path: str | os.PathLike, cfg: ExportConfig = ExportConfig(), *,
                compression: dict | None = None, check_crops: list[np.ndarray] | None = None) -> ExportResult:
    """Export ``net`` (with its decoder) to ``path``, check it and embed metadata.

    Args:
        net: the imported (possibly pruned / fine-tuned) model.
        path: output ``.onnx`` file.
        cfg: export options.
        compression: what was done to the model (configs as dicts), stored as JSON metadata.
        check_crops: real (H, W, 3) uint8 crops for the parity check (random inputs otherwise).

    Raises:
        RuntimeError: the ONNX checker fails or parity is worse than ``cfg.parity_tol_px``.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    deploy = MoveNetDeploy(net).eval()
    w, h = net.input_size
    example = torch.zeros(1, h, w, 3, dtype=torch.int32)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgepose-export-") as tmp:
        tmp_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(deploy, (example,), tmp_path, dynamo=True, opset_version=cfg.opset,
                          input_names=["input"], output_names=["keypoints"], verbose=False)
        model = onnx.load(tmp_path)  # pulls any external data in
    meta = build_metadata(net, cfg, compression)
    save_checked(model, meta, path)
    log.info("exported %s in %.1fs", path, time.perf_counter() - t0)
    rng = np.random.default_rng(0)
    inputs = [c[None].astype(np.int32) for c in (check_crops or [])][: cfg.check_inputs]
    while len(inputs) < cfg.check_inputs:
        inputs.append(rng.integers(0, 256, size=(1, h, w, 3), dtype=np.int32))
    max_px, max_sc = parity(path, deploy, inputs, max(w, h))
    if max_px > cfg.parity_tol_px:
        raise CompressionError(f"ONNX export of {net.name!r} differs from torch by {max_px:.3f} px "
                           f"(> parity_tol_px={cfg.parity_tol_px}); the file is at {str(path)!r} for inspection")
    return ExportResult(os.fspath(path), sha256_of(path), max_px, max_sc, meta)


def write_manifest(out_dir: str | os.PathLike, files: list[str | os.PathLike], extra: dict | None = None) -> Path:
    """Write ``manifest.json`` beside the artifacts: name, bytes and sha256 of each file."""
    out_dir = Path(out_dir)
    rows = [{"file": os.path.relpath(f, out_dir), "bytes": os.path.getsize(f), "sha256": sha256_of(f)}
            for f in files]
    path = out_dir / "manifest.json"
    path.write_text(json.dumps({"files": rows, **(extra or {})}, indent=2))
    return path
