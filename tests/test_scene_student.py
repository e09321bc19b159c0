"""The pruned scene student (issue 21, compression/adapt/pruned.py): interleaved latency ratios, the
per-stage pruning, and the refusals; the full benchmark is benchmarks/scene_student.py."""

from __future__ import annotations

import pytest


def _tiny_onnx(path, width: int) -> str:
    import onnx
    from onnx import TensorProto, helper

    import numpy as np

    w = helper.make_tensor("w", TensorProto.FLOAT, [width, width],
                           np.random.default_rng(0).normal(size=(width, width)).astype(np.float32).ravel())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)


@pytest.mark.backend
def test_latency_ratios_are_per_round_ratios_to_the_baseline(tmp_path):
    from edgepose.compression.adapt.pruned import latency_ratios

    models = {"base": _tiny_onnx(tmp_path / "a.onnx", 64), "other": _tiny_onnx(tmp_path / "b.onnx", 16)}
    out = latency_ratios(models, "base", threads=1, rounds=6, per_round=3)
    assert set(out) == {"base", "other"}
    assert out["base"]["ratio"] == out["base"]["q25"] == out["base"]["q75"] == 1.0
    assert out["other"]["q25"] <= out["other"]["ratio"] <= out["other"]["q75"]
    assert all(v["ms"] > 0 and v["ms_p50"] > 0 for v in out.values())


@pytest.mark.backend
def test_latency_ratios_need_the_baseline_among_the_models(tmp_path):
    from edgepose.compression.adapt.pruned import latency_ratios
    from edgepose.errors import ConfigError

    with pytest.raises(ConfigError, match="baseline"):
        latency_ratios({"a": _tiny_onnx(tmp_path / "a.onnx", 8)}, "generic")


@pytest.mark.torch
def test_refusals_before_any_work(tmp_path):
    from edgepose.compression.adapt import AdaptConfig
    from edgepose.compression.adapt.pruned import pruned_student, specialise, stage_pruned_student
    from edgepose.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown stage"):
        stage_pruned_student(None, {"stem": 0.5})
    with pytest.raises(ConfigError, match="needs labelled batches"):
        stage_pruned_student(None, {"s4": 0.5}, importance="content")
    with pytest.raises(ConfigError, match="needs labelled batches"):
        pruned_student(None, 0.3, importance="taylor")
    with pytest.raises(ConfigError, match="deploy"):
        specialise(None, None, [], [], AdaptConfig(student="pruned"), tmp_path, scene={}, current="x", deploy="fp16")


@pytest.mark.torch
@pytest.mark.slow
def test_pruning_lightning_per_stage_and_to_a_macs_target(assets):
    import torch

    from edgepose.compression.adapt.pruned import pruned_student, stage_pruned_student
    from edgepose.compression.importer import import_movenet

    generic = import_movenet(assets / "models" / "movenet" / "movenet_lightning_fp32.onnx")
    net, rec = stage_pruned_student(generic, {"s16a": 0.5, "heads": 0.25})
    assert 0.8 < rec["macs_fraction"] < 1.0 and [s["stages"] for s in rec["steps"]] == [["s16a"], ["heads"]]
    x = torch.zeros(1, 3, 192, 192)
    assert [tuple(h.shape) for h in net(x)] == [tuple(h.shape) for h in generic(x)]  # heads keep their outputs
    small, rec = pruned_student(generic, 0.3)
    assert rec["macs_fraction"] < 0.35 and rec["params_after"] < rec["params_before"]
