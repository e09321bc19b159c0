"""The int8 speed options of QuantizeConfig: the input-normalisation fold (exact in float, the first
QLinearConv reads the uint8 pixels), depthwise convs kept float, and config validation. Built on a
small MoveNet-shaped graph (int32 NHWC image -> per-channel normalise -> Transpose -> convs); no
timing asserts (benchmarks/latency_ratio.py measures speed; docs/research-notes.md C2)."""

import numpy as np
import pytest

pytestmark = pytest.mark.backend
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgepose.compression.quantize import QuantizeConfig, quantize  # noqa: E402
from edgepose.compression.quantize.ort_static import (depthwise_convs,  # noqa: E402
                                                      fold_input_normalization)

SCALE = np.float32(0.00784302)  # the tfjs graph's 1 / 127.5


def _tiny(normalise: bool = True, size: int = 16):
    """int32 [1, size, size, 3] -> (x - 0) * s - 1 (per channel) -> NCHW -> conv3x3/2 (TF-SAME pads) ->
    Relu6 -> depthwise 3x3 (8 ch) -> Relu -> 1x1 (8 -> 4)."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
            numpy_helper.from_array(rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32), "w2"),
            numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b2"),
            numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32), "w3"),
            numpy_helper.from_array(np.zeros(4, np.float32), "b3"),
            numpy_helper.from_array(np.zeros((1, 1, 1, 3), np.float32), "zero"),
            numpy_helper.from_array(np.full((1, 1, 1, 3), SCALE, np.float32), "scale"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
            numpy_helper.from_array(np.array(6.0, np.float32), "hi")]
    nodes = [helper.make_node("Cast", ["image"], ["xf"], name="cast", to=TensorProto.FLOAT)]
    x = "xf"
    if normalise:
        nodes += [helper.make_node("Sub", ["xf", "zero"], ["x0"], name="sub"),
                  helper.make_node("Mul", ["x0", "scale"], ["x1"], name="truediv"),
                  helper.make_node("Sub", ["x1", "one"], ["x2"], name="sub_1")]
        x = "x2"
    nodes += [helper.make_node("Transpose", [x], ["xt"], name="to_nchw", perm=[0, 3, 1, 2]),
              helper.make_node("Conv", ["xt", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                               strides=[2, 2], pads=[0, 0, 1, 1]),
              helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="relu6"),
              helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", kernel_shape=[3, 3], group=8,
                               pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c2"], ["r2"], name="relu"),
              helper.make_node("Conv", ["r2", "w3", "b3"], ["out"], name="pw", kernel_shape=[1, 1])]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.INT32, [1, size, size, 3])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, size // 2, size // 2])], init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _run(model, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"image": x})[0]


def _crops(n=8, size=16):
    return list(np.random.default_rng(1).integers(0, 256, size=(n, size, size, 3)).astype(np.uint8))


def test_config_rejects_unknown_speed_options():
    with pytest.raises(ValueError, match="quant_format='qlinear' is not one of qdq, qoperator"):
        QuantizeConfig(quant_format="qlinear")
    with pytest.raises(ValueError, match="weight_type='int4' is not one of int8, uint8"):
        QuantizeConfig(weight_type="int4")
    with pytest.raises(ValueError, match="exclude_depthwise_below must be >= 0"):
        QuantizeConfig(exclude_depthwise_below=-1)
    cfg = QuantizeConfig()
    assert cfg.fold_input and cfg.quant_format == "qdq" and cfg.weight_type == "int8" and not cfg.reduce_range
    assert cfg.to_dict()["exclude_depthwise_below"] == 0


def test_fold_is_the_quantised_input_and_exact_as_float():
    m = _tiny()
    folded, info = fold_input_normalization(m)
    assert folded is not None, info
    assert info["zero_point"] == 128 and info["scale"] == pytest.approx(SCALE)
    assert 0 < abs(info["input_offset"]) <= info["scale"] / 2  # half a grey level, the int8 rounding
    assert {"sub", "truediv", "sub_1", "cast", "to_nchw"} <= set(info["removed"])
    ops = [n.op_type for n in folded.graph.node]
    assert ops[:3] == ["Cast", "Transpose", "DequantizeLinear"] and "Sub" not in ops and "Mul" not in ops
    x = np.random.default_rng(2).integers(0, 256, size=(1, 16, 16, 3)).astype(np.int32)
    a = _run(m, x)
    assert np.abs(_run(folded, x) - a).max() < 0.05
    as_float, info_f = fold_input_normalization(m, as_float=True)
    assert info_f["as_float"] and info_f["input_offset"] == 0.0
    assert "DequantizeLinear" not in [n.op_type for n in as_float.graph.node]
    assert np.abs(_run(as_float, x) - a).max() < 1e-4


def test_fold_skips_graphs_without_a_normalisation():
    folded, reason = fold_input_normalization(_tiny(normalise=False))
    assert folded is None and "normalisation" in reason


def test_quantised_graph_feeds_the_pixels_straight_into_qlinearconv(tmp_path):
    src = tmp_path / "tiny.onnx"
    onnx.save(_tiny(), src)
    res = quantize(src, tmp_path / "q.onnx", QuantizeConfig(num_calibration=8), calibration=_crops())
    assert res.input_fold["zero_point"] == 128 and not res.input_fold["as_float"]
    q = onnx.load(res.path)
    producers = {o: n for n in q.graph.node for o in n.output}
    conv1 = next(n for n in q.graph.node if n.name == "conv1")
    dq = producers[conv1.input[0]]
    assert dq.op_type == "DequantizeLinear" and producers[dq.input[0]].op_type == "Transpose"
    # what ORT runs: QLinearConv for all three convs, no float or QLinear normalisation left
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(res.path, so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == 3
    assert not {"QLinearMul", "Mul", "Sub", "Conv"} & set(ops)
    x = np.random.default_rng(3).integers(0, 256, size=(1, 16, 16, 3)).astype(np.int32)
    ref = _run(_tiny(), x)
    assert np.abs(_run(q, x) - ref).max() < 0.1 * np.abs(ref).max()
    # the fold changes the speed, not the int8 model: same output as quantising the unfolded graph
    unfolded = quantize(src, tmp_path / "q0.onnx", QuantizeConfig(num_calibration=8, fold_input=False),
                        calibration=_crops())
    assert np.array_equal(_run(q, x), _run(onnx.load(unfolded.path), x))


def test_without_fold_the_normalisation_stays_in_the_graph(tmp_path):
    src = tmp_path / "tiny.onnx"
    onnx.save(_tiny(), src)
    res = quantize(src, tmp_path / "q.onnx", QuantizeConfig(num_calibration=8, fold_input=False),
                   calibration=_crops())
    assert res.input_fold == {}
    assert {"sub", "sub_1"} <= {n.name for n in onnx.load(res.path).graph.node}


def test_small_depthwise_convs_and_an_excluded_first_conv_stay_float(tmp_path):
    src = tmp_path / "tiny.onnx"
    onnx.save(_tiny(), src)
    assert depthwise_convs(_tiny(), 16) == ["dw"] and depthwise_convs(_tiny(), 8) == []
    res = quantize(src, tmp_path / "q.onnx",
                   QuantizeConfig(num_calibration=8, exclude_depthwise_below=16, exclude_nodes=("conv1",)),
                   calibration=_crops())
    assert "dw" in res.excluded and res.input_fold["as_float"]
    q = onnx.load(res.path)
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    by_name = {n.name: n for n in q.graph.node}
    inits = {i.name for i in q.graph.initializer}
    for name in ("dw", "conv1"):
        assert by_name[name].input[1] in inits  # float weights, no DequantizeLinear
    assert producers[by_name["conv1"].input[0]] == "Mul"  # float (x - zp) * a, not a DequantizeLinear
    assert producers[by_name["pw"].input[1]] == "DequantizeLinear"  # the 1x1 is still int8
