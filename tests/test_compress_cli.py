"""``edgepose compress``: the subcommand exists and bad inputs give clear errors."""

import pytest

from edgepose.cli.main import build_parser, main


@pytest.mark.core
def test_compress_is_a_subcommand_with_teacher_model_and_device_options():
    p = build_parser()
    args = p.parse_args(["compress", "--teacher", "t.onnx", "--model", "m.onnx", "--out", "o",
                         "--device", "rpi4", "--ratio", "0.25"])
    assert args.command == "compress" and args.ratio == 0.25 and args.device == "rpi4"


@pytest.mark.core
def test_a_missing_teacher_is_an_error_naming_the_flag(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    rc = main(["compress", "--teacher", str(tmp_path / "missing.onnx"), "--model", str(model),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--teacher file not found" in err and "missing.onnx" in err


@pytest.mark.core
def test_an_unknown_importance_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compress", "--teacher", "t", "--model", "m", "--out", "o",
                                   "--importance", "l1"])
    assert "invalid choice: 'l1'" in capsys.readouterr().err


@pytest.mark.core
def test_a_negative_qat_step_count_is_an_error_naming_the_flag(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    rc = main(["compress", "--teacher", str(model), "--model", str(model), "--out", str(tmp_path / "out"),
               "--tflite-qat-steps", "-5"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--tflite-qat-steps -5 is invalid: must be >= 0" in err and "e.g. 1000" in err


def _files(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    return ["compress", "--teacher", str(model), "--model", str(model), "--out", str(tmp_path / "out")]


@pytest.mark.core
@pytest.mark.parametrize("opt,value,valid", [
    ("--floor", "97", "in (0, 1]"), ("--floor", "0", "in (0, 1]"), ("--steps", "0", ">= 1"),
    ("--ratio", "1.0", "in [0, 1)"), ("--threads", "0", ">= 1"), ("--budget-ms", "-1", "> 0"),
    ("--budget-fraction", "1.5", "in (0, 1]"), ("--target-macs", "0", "in (0, 1]"), ("--lr", "0", "> 0")])
def test_a_bad_option_value_is_one_error_line_naming_the_option_the_range_and_a_fix(tmp_path, capsys, opt, value,
                                                                                    valid):
    rc = main(_files(tmp_path) + [opt, value])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert f"{opt} {float(value)!r}" in err or f"{opt} {int(value)!r}" in err
    assert valid in err and "e.g." in err
    assert not (tmp_path / "out").exists()  # checked before anything is written or loaded


@pytest.mark.core
def test_an_out_path_that_is_a_file_is_refused_before_loading_models(tmp_path, capsys):
    argv = _files(tmp_path)
    (tmp_path / "out").write_text("a file")
    rc = main(argv)
    assert rc == 2 and "--out" in capsys.readouterr().err


@pytest.mark.core
def test_missing_validation_data_and_training_media_are_named(tmp_path, capsys):
    assert main(_files(tmp_path) + ["--val-data", str(tmp_path / "val.json")]) == 2
    assert "--val-data file not found" in capsys.readouterr().err
    assert main(_files(tmp_path) + ["--data", str(tmp_path / "no-media")]) == 2
    assert "--data path not found" in capsys.readouterr().err


@pytest.mark.core
def test_without_torch_compress_ends_in_one_line_naming_the_extra(tmp_path):
    """A real interpreter where ``import torch`` fails: exit 2, one stderr line, no traceback."""
    import subprocess
    import sys

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    code = ("import sys; sys.modules['torch'] = None; from edgepose.cli.main import main; "
            f"sys.exit(main(['compress', '--teacher', {str(model)!r}, '--model', {str(model)!r}, "
            f"'--out', {str(tmp_path / 'out')!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr
    assert "pip install 'edgepose[compress]'" in lines[0] and "torch" in lines[0]


@pytest.mark.slow
@pytest.mark.torch
def test_compress_end_to_end_recommends_a_model_that_meets_the_floor(tmp_path, capsys):
    """Small run (2 distillation steps, MIT training images, no evaluation set): every candidate is scored on the
    held-out teacher crops, the barely trained 30 % pruned student is refused, report.json names a passing model."""
    import json

    pytest.importorskip("torch_pruning")
    from tests.conftest import ASSETS, MODELS

    m = MODELS / "movenet"
    extra = ASSETS / "data" / "train_extra"  # MIT / Apache-2.0 pictures
    out = tmp_path / "out"
    rc = main(["compress", "--teacher", str(m / "movenet_thunder_fp32.onnx"), "--model",
               str(m / "movenet_lightning_fp32.onnx"), "--out", str(out), "--steps", "2", "--ratio", "0.3",
               "--importance", "magnitude", "--data", str(extra / "gh_dusty-nv_jetson-inference"),
               "--data", str(extra / "gh_tensorflow_tfjs-models_history"),
               "--cache-dir", str(tmp_path / "cache"), "--no-eval", "--no-int8-mixed", "--no-tflite", "--threads", "1",
               "--student"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    by = {c["name"]: c for c in rep["candidates"]}
    assert set(by) == {"input_fp32", "input_int8_ort", "student_fp32", "student_int8"}
    assert all("heldout_teacher" in c["scores"] and c["host_ms"] > 0 for c in by.values())
    chosen = by[rep["recommended_name"]]
    assert chosen["passes_floor"] and rep["recommended"] == chosen["path"] and (tmp_path / chosen["path"]).is_file()
    assert not by["student_int8"]["passes_floor"]
    assert all(r["cpu_model"] and isinstance(r["isa_flags"], list) for r in rep["latency_ms"].values())
    md = (out / "report.md").read_text()
    assert "host ms (measured here" in md and rep["selection"]["reason"] in md and (out / "pareto.png").is_file()


@pytest.mark.slow
@pytest.mark.torch
def test_compress_default_skips_the_student_when_the_unpruned_int8_passes(tmp_path, capsys):
    """Without --student, a passing int8 of the unpruned model means no minutes of distillation; the report says
    why and names the option that trains the student anyway."""
    import json

    pytest.importorskip("torch_pruning")
    from tests.conftest import ASSETS, MODELS

    m = MODELS / "movenet"
    out = tmp_path / "out"
    rc = main(["compress", "--teacher", str(m / "movenet_thunder_fp32.onnx"), "--model",
               str(m / "movenet_lightning_fp32.onnx"), "--out", str(out),
               "--data", str(ASSETS / "data" / "train_extra" / "gh_dusty-nv_jetson-inference"),
               "--cache-dir", str(tmp_path / "cache"), "--no-eval", "--no-int8-mixed", "--no-tflite", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    names = {c["name"] for c in rep["candidates"]}
    if rep["recommended_name"] == "input_int8_ort":  # the int8 passed the held-out floor: no student
        assert names == {"input_fp32", "input_int8_ort"} and "--student" in rep["student_skipped"]
        assert "--student" in (out / "report.md").read_text()
    else:  # it did not: the student is trained as before
        assert "student_int8" in names


@pytest.mark.slow
@pytest.mark.torch
def test_compress_progressive_adds_its_steps_and_gates_them(tmp_path, capsys):
    """--progressive: one latency-probed pruning step with 2 KD steps; its int8 is scored and gated like any candidate."""
    import json

    pytest.importorskip("torch_pruning")
    from tests.conftest import ASSETS, MODELS

    m = MODELS / "movenet"
    out = tmp_path / "out"
    rc = main(["compress", "--teacher", str(m / "movenet_thunder_fp32.onnx"), "--model",
               str(m / "movenet_lightning_fp32.onnx"), "--out", str(out), "--no-student", "--progressive",
               "--progressive-steps", "1", "--progressive-kd-steps", "2",
               "--data", str(ASSETS / "data" / "train_extra" / "gh_dusty-nv_jetson-inference"),
               "--cache-dir", str(tmp_path / "cache"), "--no-eval", "--no-int8-mixed", "--no-tflite", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    pts = rep["progressive"]["points"]
    assert len(pts) <= 1 and all("heldout_teacher" in p["scores_int8"] for p in pts)
    names = {c["name"] for c in rep["candidates"]}
    assert ("progressive_int8" in names) == (rep["progressive"]["chosen_step"] is not None)
    assert "Progressive pruning" in (out / "report.md").read_text()
