"""Export a Triton / KServe model repository: ``<out>/<name>/config.pbtxt`` + ``1/model.onnx``.

The exported graph speaks the pose contract's UINT8 path, so one client talks to the embedded
server and to Triton alike: ``image`` UINT8 [1, H, W, 3] (the person crop at the model's input
size) -> ``keypoints`` FP32 [1, 17, 3] (x, y in crop pixels, score). It is the model card's ONNX
file with a Cast in front and the MoveNet decode (y, x, score normalised -> x, y pixels) behind,
checked with ``onnx.checker`` and against the card on a real image before it is written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepose._optional import require
from edgepose.errors import EdgePoseError

log = logging.getLogger(__name__)

#: Largest |keypoint difference| in crop pixels accepted between export and card (fp32 rounding).
EXPORT_TOLERANCE_PX = 1e-2

_TRITON_TYPES = {np.dtype(np.uint8): "TYPE_UINT8", np.dtype(np.float32): "TYPE_FP32"}


@dataclass
class TritonExport:
    """What :func:`export_triton` wrote.

    Attributes:
        repository: the model repository folder (point ``tritonserver --model-repository`` at it).
        model_dir: ``repository/name``.
        onnx_path: ``model_dir/1/model.onnx``.
        input_size: (w, h) of the ``image`` input.
        max_abs_diff_px: measured difference from the model card on the check image.
    """

    repository: Path
    model_dir: Path
    onnx_path: Path
    input_size: tuple[int, int]
    max_abs_diff_px: float


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
                  check_image: np.ndarray | None = None, instances: int = 1) -> TritonExport:
    """Write a Triton model repository for a MoveNet model card and verify it.

    Args:
        model: a registered ONNX MoveNet card name (e.g. ``movenet-thunder-fp32``) or file path.
        out_dir: the repository folder (created; an existing ``name`` folder is overwritten).
        name: the served model name (default: the card name).
        check_image: an RGB image to verify on (default: a seeded synthetic image).
        instances: Triton ``instance_group`` count.

    Raises:
        EdgePoseError: the card is not an ONNX MoveNet model, or the export disagrees with the
            card by more than :data:`EXPORT_TOLERANCE_PX`.
    """
    onnx = require("onnx", "compress", package="onnx")
    from edgepose.models import load_model
    from edgepose.models._crop import Roi, crop

    card = load_model(model)
    try:
        path = card.backend.model_path
        if not path.endswith(".onnx") or "movenet" not in card.name:
            raise EdgePoseError(f"Triton export supports ONNX MoveNet cards (movenet-lightning-fp32, "
                                f"movenet-thunder-fp32); {model!r} is {card.name!r} ({os.path.basename(path)})")
        wrapped, (w, h) = wrap_movenet(path)
        name = name or card.name
        repo = Path(out_dir)
        mdir = repo / name
        (mdir / "1").mkdir(parents=True, exist_ok=True)
        onnx_path = mdir / "1" / "model.onnx"
        onnx.save(wrapped, os.fspath(onnx_path))
        (mdir / "config.pbtxt").write_text(config_pbtxt(name, (w, h), instances=instances))
        img = check_image if check_image is not None else np.random.default_rng(0).integers(
            0, 256, (h, w, 3), dtype=np.uint8)
        patch, _ = crop(img, Roi.full_frame(img.shape[1], img.shape[0]), w, h)
        est = card.estimate(patch, Roi.full_frame(w, h))
    finally:
        card.close()
    from edgepose.backends.ort import OrtBackend

    with OrtBackend(onnx_path, num_threads=1) as b:
        got = b.run({"image": patch[None]})["keypoints"][0]
    diff = float(np.abs(got[:, :2] - est.keypoints).max())
    if diff > EXPORT_TOLERANCE_PX:
        raise EdgePoseError(f"exported {onnx_path} differs from the card by {diff:.4f} px "
                            f"(> {EXPORT_TOLERANCE_PX}); report this as a bug")
    log.info("wrote %s (max |diff| %.2e px)", mdir, diff)
    return TritonExport(repo, mdir, onnx_path, (w, h), diff)
