"""Backends: real ONNX Runtime and LiteRT sessions, and every bad-input path with its message."""

import re

import numpy as np
import pytest

from edgepose.backends import list_backends, open_backend
from edgepose.backends.base import TensorSpec
from edgepose.backends.litert import load_interpreter_class
from edgepose.backends.null import NullBackend
from edgepose.errors import EdgePoseError, InputSpecError, MissingDependencyError, ModelLoadError

MOVENET = "models/movenet/"


@pytest.fixture(params=["movenet_lightning_int8.tflite", "movenet_lightning_fp32.onnx"])
def model_file(request, assets):
    return assets / "models" / "movenet" / request.param


@pytest.mark.backend
def test_backends_are_listed_by_name():
    assert list_backends() == ["litert", "null", "ort"]


@pytest.mark.backend
def test_backend_runs_a_real_model_and_reports_specs(model_file):
    with open_backend(model_file, num_threads=1) as b:
        spec = b.inputs[0]
        assert spec.shape == (1, 192, 192, 3)
        out = b.run({spec.name: np.zeros(spec.shape, spec.dtype)})
        (arr,) = out.values()
        assert arr.shape == (1, 1, 17, 3) and arr.dtype == np.float32
        assert b.outputs[0].shape == (1, 1, 17, 3)
    b.close()  # idempotent


@pytest.mark.backend
def test_missing_model_file_names_the_path(tmp_path):
    p = tmp_path / "nope.onnx"
    with pytest.raises(ModelLoadError, match=re.escape(f"model file not found: {str(p)!r}")):
        open_backend(p)


@pytest.mark.backend
def test_unknown_extension_lists_the_valid_ones(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=re.escape("extension '.pt' is not one of .onnx, .tflite")):
        open_backend(p)


@pytest.mark.backend
def test_unknown_backend_name_lists_choices(model_file):
    with pytest.raises(EdgePoseError, match=re.escape("unknown backend 'tensorrt'; valid choices: litert, ort")):
        open_backend(model_file, backend="tensorrt")


@pytest.mark.backend
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupted_or_truncated_model_file_is_a_clear_load_error(model_file, tmp_path, damage):
    bad = tmp_path / model_file.name
    data = model_file.read_bytes()
    bad.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\x00junk" * 100)
    with pytest.raises(ModelLoadError) as ei:
        open_backend(bad)
    msg = str(ei.value)
    assert repr(str(bad)) in msg
    assert ("corrupted" in msg) and ("truncated" in msg)


@pytest.mark.backend
def test_wrong_input_name_shape_and_dtype_name_the_tensor_and_expectation(assets):
    with open_backend(assets / MOVENET / "movenet_lightning_fp32.onnx") as b:
        ok = np.zeros((1, 192, 192, 3), np.int32)
        with pytest.raises(InputSpecError, match=re.escape(
                "unknown input tensor 'image'") ):
            b.run({"image": ok})
        with pytest.raises(InputSpecError, match=re.escape(
                "input tensor 'input:0' has shape [1, 256, 256, 3], expected input:0 [1,192,192,3] int32")):
            b.run({"input:0": np.zeros((1, 256, 256, 3), np.int32)})
        with pytest.raises(InputSpecError, match=re.escape(
                "input tensor 'input:0' has dtype float32, expected int32 (input:0 [1,192,192,3] int32); "
                "convert with .astype(np.int32)")):
            b.run({"input:0": ok.astype(np.float32)})
        with pytest.raises(InputSpecError, match=re.escape("missing input tensor 'input:0'")):
            b.run({})


@pytest.mark.backend
def test_num_threads_must_be_positive(model_file):
    with pytest.raises(ValueError, match=re.escape("num_threads must be a positive int or None, got 0")):
        open_backend(model_file, num_threads=0)


@pytest.mark.core
def test_litert_fallback_import_failure_names_every_runtime_and_the_fix():
    with pytest.raises(MissingDependencyError) as ei:
        load_interpreter_class(("no_such_litert.interpreter", "no_such_tflite_runtime.interpreter"))
    msg = str(ei.value)
    assert "no_such_litert.interpreter: ModuleNotFoundError" in msg
    assert "no_such_tflite_runtime.interpreter: ModuleNotFoundError" in msg
    assert "pip install 'edgepose[tflite]'" in msg


@pytest.mark.core
def test_litert_falls_back_to_the_second_runtime_when_the_first_is_missing():
    cls, mod = load_interpreter_class(("no_such_litert.interpreter", "ai_edge_litert.interpreter"))
    assert mod == "ai_edge_litert.interpreter" and cls.__name__ == "Interpreter"


@pytest.mark.core
def test_null_backend_checks_feeds_and_returns_fixed_outputs():
    b = NullBackend(inputs=[TensorSpec("x", (1, 2), np.dtype(np.float32))],
                    outputs={"y": np.ones((1, 3), np.float32)})
    assert b.run({"x": np.zeros((1, 2), np.float32)})["y"].sum() == 3
    with pytest.raises(InputSpecError):
        b.run({"x": np.zeros((1, 2), np.float64)})
    assert b.calls == 1
