"""Export a Triton / KServe model repository for a MoveNet model card, in one of two backends.

``backend="python"`` (the default: the one the ``tritonserver`` of ``nvidia-pytriton`` runs, see
:mod:`edgepose.server.triton_env`) writes ``<out>/<name>/config.pbtxt`` + ``1/model.py`` (the
Triton Python backend :mod:`edgepose.server.triton_model`) + ``1/pose.onnx`` (the card's graph,
unchanged). It serves the full pose contract of ``edgepose serve``: ``image_bytes`` BYTES [N] or
``image`` UINT8 [N, H, W, 3] (any crop size) -> ``keypoints`` FP32 [N, 17, 3], with dynamic
batching (``max_batch_size`` crops per request).

``backend="onnxruntime"`` writes ``config.pbtxt`` + ``1/model.onnx`` for Triton's onnxruntime
backend (NGC Triton images, GPU): the card's graph with a Cast in front and the MoveNet decode
behind, on the UINT8 path only: ``image`` UINT8 [1, H, W, 3] (the crop already at the model's
input size) -> ``keypoints`` FP32 [1, 17, 3].

Either export is checked against the card on a real image before it is reported.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepose._optional import require
from edgepose.errors import EdgePoseError

log = logging.getLogger(__name__)

#: Largest |keypoint difference| in crop pixels accepted between export and card (fp32 rounding).
EXPORT_TOLERANCE_PX = 1e-2

_TRITON_TYPES = {np.dtype(np.uint8): "TYPE_UINT8", np.dtype(np.float32): "TYPE_FP32"}
#: Export backends: Triton's Python backend (onnxruntime inside, full contract) or its onnxruntime one.
BACKENDS = ("python", "onnxruntime")


@dataclass
class TritonExport:
    """What :func:`export_triton` wrote.

    Attributes:
        repository: the model repository folder (point ``tritonserver --model-repository`` at it).
        model_dir: ``repository/name``.
        onnx_path: ``model_dir/1/model.onnx`` (onnxruntime) or ``model_dir/1/pose.onnx`` (python).
        input_size: (w, h) of the model input.
        max_abs_diff_px: measured difference from the model card on the check image.
        backend: ``"python"`` or ``"onnxruntime"``.
    """

    repository: Path
    model_dir: Path
    onnx_path: Path
    input_size: tuple[int, int]
    max_abs_diff_px: float
    backend: str = "onnxruntime"


def config_pbtxt(name: str, input_size: tuple[int, int], *, instances: int = 1) -> str:
    """The Triton ``config.pbtxt`` of an exported pose model."""
    w, h = input_size
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 0\n"
        f'input [\n  {{\n    name: "image"\n    data_type: TYPE_UINT8\n    dims: [ 1, {h}, {w}, 3 ]\n  }}\n]\n'
        'output [\n  {\n    name: "keypoints"\n    data_type: TYPE_FP32\n    dims: [ 1, 17, 3 ]\n  }\n]\n'
        f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]\n"
    )


def python_config_pbtxt(name: str, *, instances: int = 1, max_batch: int = 16, dynamic_batching: bool = False,
                        queue_delay_us: int = 2000, threads: int = 0) -> str:
    """The ``config.pbtxt`` of the Python-backend export.

    Default (``dynamic_batching=False``): ``max_batch_size: 0``, so the tensors are exactly the
    pose contract of ``edgepose serve`` (``image_bytes`` BYTES [N], what the offload client
    sends); ``model.py`` refuses more than ``max_batch`` crops per request.

    ``dynamic_batching=True``: ``max_batch_size: max_batch`` and Triton's dynamic batcher hands
    ``model.py`` the requests that arrive within ``queue_delay_us`` together (crops of any size:
    ``allow_ragged_batch``). Triton then requires a batch dimension in front of every input, so
    ``image_bytes`` must be sent as [N, 1] (the embedded server accepts [N, 1] too); ``image``
    stays [N, H, W, 3].
    """
    head = f'name: "{name}"\nbackend: "python"\n'
    if dynamic_batching:
        head += f"max_batch_size: {max_batch}\n"
        inputs = ('  {\n    name: "image_bytes"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n'
                  "    optional: true\n    allow_ragged_batch: true\n  },\n"
                  '  {\n    name: "image"\n    data_type: TYPE_UINT8\n    dims: [ -1, -1, 3 ]\n'
                  "    optional: true\n    allow_ragged_batch: true\n  }\n")
        out_dims = "[ 17, 3 ]"
        tail = f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}\n"
    else:
        head += "max_batch_size: 0\n"
        inputs = ('  {\n    name: "image_bytes"\n    data_type: TYPE_STRING\n    dims: [ -1 ]\n    optional: true\n  },\n'
                  '  {\n    name: "image"\n    data_type: TYPE_UINT8\n    dims: [ -1, -1, -1, 3 ]\n    optional: true\n  }\n')
        out_dims = "[ -1, 17, 3 ]"
        tail = ""
    return (
        head + "input [\n" + inputs + "]\n"
        + f'output [\n  {{\n    name: "keypoints"\n    data_type: TYPE_FP32\n    dims: {out_dims}\n  }}\n]\n'
        + tail
        + f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]\n"
        + "parameters [\n"
        + f'  {{\n    key: "intra_op_threads"\n    value: {{ string_value: "{threads}" }}\n  }},\n'
        + f'  {{\n    key: "max_crops"\n    value: {{ string_value: "{max_batch}" }}\n  }}\n'
        + "]\n"
    )


def load_python_model(model_dir: str | os.PathLike, threads: int = 1):
    """The exported ``1/model.py``'s :class:`~edgepose.server.triton_model.Pose`, run here (no Triton)."""
    path = Path(model_dir) / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"edgepose_triton_model_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Pose(os.fspath(Path(model_dir) / "1" / "pose.onnx"), threads)


def wrap_movenet(src: str | os.PathLike):
    """The MoveNet ONNX graph wrapped to UINT8 image in, pixel keypoints out (an onnx ModelProto)."""
    onnx = require("onnx", "compress", package="onnx")
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(os.fspath(src))
    g = m.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise EdgePoseError(f"{os.fspath(src)!r} has {len(g.input)} inputs / {len(g.output)} outputs; the Triton "
                            "export wraps MoveNet SinglePose graphs (one image in, [1,1,17,3] out)")
    src_in, src_out = g.input[0], g.output[0]
    dims = [d.dim_value for d in src_in.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[3] != 3 or not all(dims):
        raise EdgePoseError(f"{os.fspath(src)!r} input {src_in.name} has shape {dims}; expected static [1,H,W,3]")
    h, w = dims[1], dims[2]
    g.input.remove(src_in)
    g.input.insert(0, helper.make_tensor_value_info("image", TensorProto.UINT8, dims))
    g.output.remove(src_out)
    g.output.append(helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, [1, 17, 3]))
    g.initializer.extend([
        numpy_helper.from_array(np.array([1, 17, 3], np.int64), "edgepose_kp_shape"),
        numpy_helper.from_array(np.array([1, 0, 2], np.int64), "edgepose_kp_order"),
        numpy_helper.from_array(np.array([w, h, 1], np.float32), "edgepose_kp_scale"),
    ])
    g.node.insert(0, helper.make_node("Cast", ["image"], [src_in.name],
                                      to=src_in.type.tensor_type.elem_type, name="edgepose_cast"))
    g.node.extend([
        helper.make_node("Reshape", [src_out.name, "edgepose_kp_shape"], ["edgepose_kp_r"], name="edgepose_reshape"),
        helper.make_node("Gather", ["edgepose_kp_r", "edgepose_kp_order"], ["edgepose_kp_xy"], axis=2,
                         name="edgepose_xy"),
        helper.make_node("Mul", ["edgepose_kp_xy", "edgepose_kp_scale"], ["keypoints"], name="edgepose_px"),
    ])
    onnx.checker.check_model(m)
    return m, (w, h)


def export_triton(model: str, out_dir: str | os.PathLike, *, name: str | None = None,
                  check_image: np.ndarray | None = None, instances: int = 1, backend: str = "python",
                  max_batch: int = 16, dynamic_batching: bool = False, queue_delay_us: int = 2000,
                  threads: int = 0) -> TritonExport:
    """Write a Triton model repository for a MoveNet model card and verify it.

    Args:
        model: a registered ONNX MoveNet card name (e.g. ``movenet-thunder-fp32``) or file path.
        out_dir: the repository folder (created; an existing ``name`` folder is overwritten).
        name: the served model name (default: the card name).
        check_image: an RGB image to verify on (default: a seeded synthetic image).
        instances: Triton ``instance_group`` count.
        backend: ``"python"`` (Triton Python backend: full pose contract, dynamic batching) or
            ``"onnxruntime"`` (Triton's onnxruntime backend: UINT8 [1, H, W, 3] at the model size).
        max_batch: python backend: most crops per request (and per dynamic batch).
        dynamic_batching: python backend: Triton's dynamic batcher on (``image_bytes`` is then
            sent as [N, 1]; see :func:`python_config_pbtxt`).
        queue_delay_us: python backend: how long the dynamic batcher waits to fill a batch.
        threads: python backend: onnxruntime intra-op threads per instance (0: onnxruntime's default).

    Raises:
        EdgePoseError: unknown backend, the card is not an ONNX MoveNet model, or the export
            disagrees with the card by more than :data:`EXPORT_TOLERANCE_PX`.
    """
    if backend not in BACKENDS:
        raise EdgePoseError(f"unknown Triton backend {backend!r}; valid: {', '.join(BACKENDS)}")
    from edgepose.models import load_model
    from edgepose.models._crop import Roi, crop

    card = load_model(model)
    try:
        path = card.backend.model_path
        if not path.endswith(".onnx") or "movenet" not in card.name:
            raise EdgePoseError(f"Triton export supports ONNX MoveNet cards (movenet-lightning-fp32, "
                                f"movenet-thunder-fp32, movenet-lightning-int8-onnx); {model!r} is {card.name!r} "
                                f"({os.path.basename(path)})")
        name = name or card.name
        repo = Path(out_dir)
        mdir = repo / name
        if mdir.is_dir():
            shutil.rmtree(mdir)
        (mdir / "1").mkdir(parents=True)
        img = check_image if check_image is not None else np.random.default_rng(0).integers(
            0, 256, (card.input_size[1], card.input_size[0], 3), dtype=np.uint8)
        if backend == "python":
            return _export_python(card, path, mdir, img, instances=instances, max_batch=max_batch,
                                  dynamic_batching=dynamic_batching, queue_delay_us=queue_delay_us, threads=threads)
        onnx = require("onnx", "server", package="onnx")
        wrapped, (w, h) = wrap_movenet(path)
        onnx_path = mdir / "1" / "model.onnx"
        onnx.save(wrapped, os.fspath(onnx_path))
        (mdir / "config.pbtxt").write_text(config_pbtxt(name, (w, h), instances=instances))
        patch, _ = crop(img, Roi.full_frame(img.shape[1], img.shape[0]), w, h)
        est = card.estimate(patch, Roi.full_frame(w, h))
    finally:
        card.close()
    from edgepose.backends.ort import OrtBackend

    with OrtBackend(onnx_path, num_threads=1) as b:
        got = b.run({"image": patch[None]})["keypoints"][0]
    diff = float(np.abs(got[:, :2] - est.keypoints).max())
    _check_diff(diff, onnx_path)
    log.info("wrote %s (max |diff| %.2e px)", mdir, diff)
    return TritonExport(repo, mdir, onnx_path, (w, h), diff, "onnxruntime")


def _check_diff(diff: float, path) -> None:
    if not diff <= EXPORT_TOLERANCE_PX:
        raise EdgePoseError(f"exported {path} differs from the card by {diff:.4f} px "
                            f"(> {EXPORT_TOLERANCE_PX}); report this as a bug")


def _export_python(card, path: str, mdir: Path, img: np.ndarray, **cfg) -> TritonExport:
    """The Python-backend repository: model.py + the card's graph, checked on ``img`` (full frame)."""
    from edgepose.models._crop import Roi
    from edgepose.server import triton_model

    onnx_path = mdir / "1" / "pose.onnx"
    shutil.copyfile(path, onnx_path)
    shutil.copyfile(triton_model.__file__, mdir / "1" / "model.py")
    (mdir / "config.pbtxt").write_text(python_config_pbtxt(mdir.name, **cfg))
    est = card.estimate(np.ascontiguousarray(img), Roi.full_frame(img.shape[1], img.shape[0]))
    got = load_python_model(mdir).infer(image=img[None])[0]
    diff = float(np.abs(got[:, :2] - est.keypoints).max())
    _check_diff(diff, mdir / "1" / "model.py")
    log.info("wrote %s (python backend; max |diff| %.2e px)", mdir, diff)
    return TritonExport(mdir.parent, mdir, onnx_path, tuple(card.input_size), diff, "python")
