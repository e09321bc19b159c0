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
    assert "--tflite-qat-steps must be >= 0" in err and "got -5" in err
