"""ONNX -> torch import of MoveNet: parity with the original ONNX on real crops, the numpy decoder."""

import numpy as np
import pytest

from tests.conftest import ASSETS, MODELS, read_rgb

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from edgepose.compression.importer import (DecodeConstants, ImportConfig, MoveNetDeploy,  # noqa: E402
                                           decode_heads, decode_heads_torch, import_movenet)
from edgepose.models._crop import Roi, crop  # noqa: E402

MOVENET = MODELS / "movenet"
CROP_IMAGES = ["data/tfjs_testdata/pose.jpg", "data/tfjs_testdata/three_people.jpg",
               "data/train_extra/gh_ildoonet_tf-pose-estimation/images_golf.jpg",
               "data/train_extra/pypi_scikit-image/astronaut.jpg"]


def _real_crops(size):
    out = []
    for rel in CROP_IMAGES:
        p = ASSETS / rel
        if not p.is_file():
            continue
        img = read_rgb(p)
        h, w = img.shape[:2]
        out.append(crop(img, Roi.full_frame(w, h), size, size)[0])
        out.append(crop(img, Roi.square(w * 0.45, h * 0.5, min(w, h) * 0.8, 0.2), size, size)[0])
    assert len(out) >= 4
    return out


@pytest.mark.parametrize("name,size", [("lightning", 192), ("thunder", 256)])
def test_imported_movenet_matches_the_onnx_file_within_one_pixel_on_real_crops(name, size):
    ort = pytest.importorskip("onnxruntime")
    path = MOVENET / f"movenet_{name}_fp32.onnx"
    net = import_movenet(path)
    assert net.input_size == (size, size)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = []
    for c in _real_crops(size):
        ref = sess.run(None, {"input:0": c[None].astype(np.int32)})[0].reshape(17, 3)
        with torch.no_grad():
            heads = [h[0].numpy() for h in net(net.normalise(torch.from_numpy(c[None])))]
        out = decode_heads(*heads, net.decode)
        diffs.append(np.hypot(*((out[:, :2] - ref[:, :2]) * size).T))
        np.testing.assert_allclose(out[:, 2], ref[:, 2], atol=1e-4)
    assert np.mean(diffs) <= 1.0
    assert np.median(diffs) < 0.01  # in practice the import is exact


def test_imported_heads_have_movenet_shapes_and_the_heads_final_convs_are_listed():
    net = import_movenet(MOVENET / "movenet_lightning_fp32.onnx")
    with torch.no_grad():
        heat, ctr, reg, off = net(torch.zeros(1, 3, 192, 192))
    assert heat.shape == (1, 17, 48, 48) and ctr.shape == (1, 1, 48, 48)
    assert reg.shape == (1, 34, 48, 48) and off.shape == (1, 34, 48, 48)
    assert sorted(c.out_channels for c in net.head_convs()) == [1, 17, 34, 34]
    np.testing.assert_allclose(net.scale.flatten().numpy(), [1 / 127.5] * 3, rtol=1e-3)
    np.testing.assert_allclose(net.shift.flatten().numpy(), [-1.0] * 3)


def test_restoring_batchnorm_keeps_the_function_in_eval_mode():
    path = MOVENET / "movenet_lightning_fp32.onnx"
    a, b = import_movenet(path), import_movenet(path, ImportConfig(restore_bn=True)).eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in b.modules())
    x = torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        for ha, hb in zip(a(x), b(x)):
            assert float((ha - hb).abs().max()) < 1e-4 * max(1.0, float(ha.abs().max()))


def _synthetic_heads(k=17, h=12, w=12):
    heat = np.full((k, h, w), 0.01, np.float32)
    ctr = np.zeros((1, h, w), np.float32)
    reg = np.zeros((2 * k, h, w), np.float32)
    off = np.zeros((2 * k, h, w), np.float32)
    ctr[0, 6, 5] = 0.9
    for j in range(k):
        y, x = 2 + j % 8, 3 + j % 5
        reg[2 * j, 6, 5], reg[2 * j + 1, 6, 5] = y - 6, x - 5  # regression points at the peak
        heat[j, y, x] = 0.6 + 0.01 * j
        off[2 * j, y, x], off[2 * j + 1, y, x] = 0.25, 0.75
    consts = DecodeConstants(np.ones((h, w), np.float32), 1.8, np.array([1 / h, 1 / w], np.float32))
    return heat, ctr, reg, off, consts


def test_numpy_decoder_reads_peak_plus_offset_and_the_peak_score():
    heat, ctr, reg, off, consts = _synthetic_heads()
    out = decode_heads(heat, ctr, reg, off, consts)
    for j in range(17):
        y, x = 2 + j % 8, 3 + j % 5
        np.testing.assert_allclose(out[j], [(y + 0.25) / 12, (x + 0.75) / 12, 0.6 + 0.01 * j], rtol=1e-5)


def test_torch_decoder_equals_the_numpy_decoder():
    heat, ctr, reg, off, consts = _synthetic_heads()
    rng = np.random.default_rng(0)
    heat = heat + rng.uniform(0, 0.3, heat.shape).astype(np.float32)
    t = decode_heads_torch(*(torch.from_numpy(a[None]) for a in (heat, ctr, reg, off)),
                           torch.from_numpy(consts.center_weight), consts.dist_offset,
                           torch.from_numpy(consts.out_scale))
    np.testing.assert_allclose(t[0].numpy(), decode_heads(heat, ctr, reg, off, consts), atol=1e-6)


def test_deploy_wrapper_reproduces_the_onnx_output_format(pose_jpg):
    ort = pytest.importorskip("onnxruntime")
    path = MOVENET / "movenet_lightning_fp32.onnx"
    dep = MoveNetDeploy(import_movenet(path)).eval()
    c = crop(pose_jpg, Roi.full_frame(pose_jpg.shape[1], pose_jpg.shape[0]), 192, 192)[0][None].astype(np.int32)
    with torch.no_grad():
        out = dep(torch.from_numpy(c)).numpy()
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input:0": c})[0]
    assert out.shape == (1, 1, 17, 3)
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="teacher/model file not found"):
        import_movenet(tmp_path / "nope.onnx")


def test_a_non_movenet_graph_is_refused_with_the_reason(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 3])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    p = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), p)
    with pytest.raises(ValueError, match="no NHWC->NCHW Transpose"):
        import_movenet(p)
