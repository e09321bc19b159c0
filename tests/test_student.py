"""The student card: pure decoders with known answers, and metadata-driven loading of real ONNX files."""

import json
import re

import numpy as np
import pytest

from edgepose.errors import ModelLoadError
from edgepose.models import load_model
from edgepose.models._crop import Roi
from edgepose.models.student import decode_heatmaps, decode_rle, decode_simcc


@pytest.mark.core
def test_heatmap_decoder_finds_the_peak_with_quarter_pixel_refinement():
    hm = np.zeros((2, 8, 6), np.float32)
    hm[0, 3, 2] = 0.9
    hm[0, 3, 3] = 0.5  # right neighbour higher -> +0.25 cell in x
    hm[1, 0, 0] = 0.7  # border peak: no refinement
    coords, scores = decode_heatmaps(hm, (24, 32))  # stride 4
    np.testing.assert_allclose(coords, [[(2.25 + 0.5) * 4, (3 + 0.5) * 4], [2.0, 2.0]])
    np.testing.assert_allclose(scores, [0.9, 0.7], rtol=1e-6)


@pytest.mark.core
def test_simcc_decoder_reads_bins_at_the_split_ratio():
    sx = np.full((1, 20), -10.0)
    sy = np.full((1, 30), -10.0)
    sx[0, 7] = 10.0
    sy[0, 12] = 10.0
    coords, scores = decode_simcc(sx, sy, split=2.0)
    np.testing.assert_allclose(coords, [[3.75, 6.25]])
    assert scores[0] > 0.99


@pytest.mark.core
def test_rle_decoder_scales_coords_and_reports_sigma_in_pixels():
    c, s, sig = decode_rle(np.array([[0.5, 0.25]]), np.array([[0.1, 0.3]]), (100, 200))
    np.testing.assert_allclose(c, [[50.0, 50.0]])
    np.testing.assert_allclose(s, [0.8], rtol=1e-6)
    np.testing.assert_allclose(sig, [(10.0 + 60.0) / 2])


def _heatmap_onnx(path, meta: dict):
    """A real ONNX heatmap 'student': a fixed peak per keypoint, plus 0 x the input (so it is used)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    hm = np.zeros((1, 17, 16, 12), np.float32)
    for k in range(17):
        hm[0, k, k % 16, 6] = 0.8
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 48])
    y = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 17, 16, 12])
    nodes = [
        helper.make_node("ReduceSum", ["image"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["hm", "z"], ["heatmaps"]),
    ]
    graph = helper.make_graph(nodes, "student", [x], [y], initializer=[
        numpy_helper.from_array(hm, "hm"), numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


META = {"edgepose.card": "student", "edgepose.head": "heatmap", "edgepose.keypoint_format": "coco17",
        "edgepose.input_layout": "NCHW", "edgepose.mean": json.dumps([123.7, 116.3, 103.5]),
        "edgepose.std": json.dumps([58.4, 57.1, 57.4]), "edgepose.outputs": json.dumps({"heatmaps": "heatmaps"})}


@pytest.mark.backend
def test_student_file_is_recognised_from_its_metadata_and_decoded_to_frame_pixels(tmp_path):
    path = _heatmap_onnx(tmp_path / "s.onnx", META)
    with load_model(path) as m:
        assert m.name == "student" and m.head == "heatmap" and m.input_size == (48, 64)
        est = m.estimate(np.zeros((128, 96, 3), np.uint8), Roi(48, 64, 96, 128))
    # heatmap cell (x=6, y=k) -> input px ((6.5) * 4, (k + .5) * 4) -> frame px x2
    np.testing.assert_allclose(est.keypoints[0], [52.0, 4.0], atol=1e-3)
    np.testing.assert_allclose(est.keypoints[3], [52.0, 28.0], atol=1e-3)
    np.testing.assert_allclose(est.scores, 0.8, rtol=1e-6)


@pytest.mark.backend
def test_student_with_missing_metadata_key_names_the_key(tmp_path):
    meta = {k: v for k, v in META.items() if k != "edgepose.input_layout"}
    path = _heatmap_onnx(tmp_path / "s.onnx", meta)
    with pytest.raises(ModelLoadError, match=re.escape(
            "lacks metadata key 'edgepose.input_layout' (NCHW or NHWC); re-export it with edgepose.compression")):
        load_model(path)


@pytest.mark.backend
def test_unrecognised_model_file_asks_for_a_card_instead_of_guessing(tmp_path):
    path = _heatmap_onnx(tmp_path / "mystery.onnx", {})
    with pytest.raises(ModelLoadError, match=re.escape("cannot tell which model card reads")) as ei:
        load_model(path)
    assert "Pass card=NAME (--card NAME) with one of: blazepose-full" in str(ei.value)
