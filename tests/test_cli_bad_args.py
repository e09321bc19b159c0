"""Every mistake is one clear line: each subcommand with bad values for its options.

Each case asserts exit code 2, a message that names the option (or the file), the valid values or
the fix, and no traceback. The cases run in-process (an escaping exception fails the test, and the
CLI's catch-all answers 1, not 2); a few run as real processes to check stderr end to end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgepose.cli.main import _commands, main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "afile.txt").write_text("hello\n")
    (d / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (d / "notjson.json").write_text("this is not JSON {\n")
    (d / "ref.json").write_text("{}\n")
    (d / "garbage.onnx").write_bytes(b"\x00not a model" * 10)
    (d / "folder").mkdir()
    return d


@pytest.fixture(scope="module")
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def _cases(f: Path, busy: int):
    """(argv, substrings the one-line message must hold). ``{f}`` is the folder of test files."""
    afile, binary, notjson, garbage, folder = (str(f / n) for n in
                                               ("afile.txt", "binary.yaml", "notjson.json", "garbage.onnx", "folder"))
    missing = str(f / "missing.mp4")
    return [
        # run
        (["run", "demo", "--threads", "-3"], ["--threads", ">= 1"]),
        (["run", "demo", "--threads", "many"], ["--threads", "not an integer"]),
        (["run", "demo", "--max-frames", "0"], ["--max-frames", ">= 1"]),
        (["run", "demo", "--out", afile], ["--out", "is a file", "folder"]),
        (["run", missing], ["missing.mp4", "does not exist", "'demo'"]),
        (["run", folder], ["folder", "not a readable file"]),
        (["run", "demo", "--model", "movenet-huge"], ["unknown model 'movenet-huge'", "valid choices"]),
        (["run", "demo", "--model", str(f / "nope.onnx")], ["nope.onnx", "not found"]),
        (["run", "demo", "--model", garbage], ["garbage.onnx"]),
        (["run", "demo", "--smoother", "kalman"], ["--smoother", "invalid choice", "one_euro"]),
        (["run", "demo", "--model-dir", missing], ["--model-dir", "does not exist"]),
        # serve
        (["serve", "--model", "movenet-lightning-int8-onnx", "--port", "99999"], ["--port", "[0, 65535]"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--port", "http"], ["--port", "not an integer"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--max-body-bytes", "10"], ["--max-body-bytes", ">= 1024"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--max-concurrency", "0"], ["--max-concurrency", "[1, 1024]"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--threads", "-3"], ["--threads", ">= 1"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--host", "256.1.1.1"], ["--host", "not a valid IPv4", "0.0.0.0"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--port", str(busy)], ["--port", str(busy), "--port 0"]),
        (["serve", "--onnx", "tail"], ["--onnx", "NAME=PATH"]),
        (["serve", "--onnx", f"tail={missing}"], ["--onnx", "does not exist"]),
        (["serve"], ["nothing to serve", "--model"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--max-batch", "0"], ["--max-batch", "[1, 4096]"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--collect", afile], ["--collect", "is a file"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--collect-max-items", "0"], ["--collect-max-items", ">= 1"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--collect-max-mb", "0"], ["--collect-max-mb", ">= 0.01"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--max-connections", "-1"], ["--max-connections"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--read-timeout-s", "0"], ["--read-timeout-s", "> 0"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--idle-timeout-s", "nan"], ["--idle-timeout-s"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--max-bytes-in-flight", "2048"],
         ["--max-bytes-in-flight", "--max-body-bytes"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--token-env", "EDGEPOSE_TEST_UNSET_VAR"],
         ["--token-env", "EDGEPOSE_TEST_UNSET_VAR", "export"]),
        (["serve", "--model", "no-such-card", "--port", "0"], ["unknown model 'no-such-card'", "valid choices"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--engine", "tensorrt"],
         ["--engine", "invalid choice", "embedded", "triton"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--engine", "triton", "--triton-env", missing],
         ["Triton environment", "does not exist", "python -m edgepose.server.triton_env setup"]),
        (["serve", "--onnx", f"tail={afile}", "--engine", "triton"], ["--onnx", "--engine triton"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--engine", "triton", "--grpc-port", "70000"],
         ["--grpc-port", "[0, 65535]"]),
        (["serve", "--model", "movenet-lightning-int8-onnx", "--engine", "triton", "--port", "65535"],
         ["--grpc-port", "65536", "65535"]),
        # bench
        (["bench", missing], ["suite", "does not exist"]),
        (["bench", binary], ["binary.yaml", "not a UTF-8 text file"]),
        (["bench", "benchmarks/smoke.yaml", "--runs", "0"], ["--runs", ">= 1"]),
        (["bench", "benchmarks/smoke.yaml", "--pairs", "x"], ["--pairs", "not an integer"]),
        (["bench", "benchmarks/smoke.yaml", "--out", afile], ["--out", "is a file"]),
        (["bench", "benchmarks/smoke.yaml", "--assets", missing], ["--assets", "does not exist"]),
        (["bench", "benchmarks/smoke.yaml", "--device", "raspberry-pi-99"], ["device profile", "raspberry-pi-99", "rpi4"]),
        (["bench", "benchmarks/smoke.yaml", "--host-profile", missing], ["--host-profile", "does not exist"]),
        # eval
        (["eval"], ["--model", "required"]),
        (["eval", "--model", "movenet-lightning-int8-onnx", "--threads", "0"], ["--threads", ">= 1"]),
        (["eval", "--model", "movenet-lightning-int8-onnx", "--datasets", "imagenet"], ["imagenet", "coco"]),
        (["eval", "--model", "movenet-lightning-int8-onnx", "--data-root", missing], ["--data-root", "does not exist"]),
        (["eval", "--model", "movenet-lightning-int8-onnx", "--json", folder], ["--json", "is a folder"]),
        (["eval", "--model", "movenet-lightning-int8-onnx", "--crop-convention", "pixel"], ["--crop-convention", "index"]),
        # eval-video
        (["eval-video", missing, "--model", "movenet-lightning-int8-onnx", "--reference", afile], ["video", "does not exist"]),
        (["eval-video", afile, "--model", "movenet-lightning-int8-onnx", "--reference", notjson],
         ["--reference", "notjson.json", "not valid JSON"]),
        (["eval-video", afile, "--model", "movenet-lightning-int8-onnx", "--reference", missing],
         ["--reference", "does not exist"]),
        (["eval-video", afile, "--model", "movenet-lightning-int8-onnx", "--reference", str(f / "ref.json"),
          "--max-frames", "-1"],
         ["--max-frames", ">= 1"]),
        # eval-temporal
        (["eval-temporal", "--clips", "nope"], ["evaluation clip 'nope'", "valid choices"]),
        (["eval-temporal", "--delays", "two"], ["--delays", "not an integer"]),
        (["eval-temporal", "--keyframes", "1"], ["--keyframes", ">= 2"]),
        (["eval-temporal", "--min-score", "2"], ["--min-score", "<= 1"]),
        (["eval-temporal", "--smoother", missing], ["--smoother", "does not exist"]),
        (["eval-temporal", "--assets", afile], ["--assets", "not a folder"]),
        # export
        (["export", "triton", "--model", "movenet-thunder-fp32", "--out", afile], ["--out", "is a file"]),
        (["export", "triton", "--model", "movenet-thunder-fp32", "--out", folder, "--instances", "0"],
         ["--instances", "[1, 64]"]),
        (["export", "split", "--model", "movenet-lightning-fp32", "--link", "carrier-pigeon"],
         ["network link 'carrier-pigeon'", "wifi"]),
        (["export", "split", "--model", "movenet-lightning-fp32", "--edge-slowdown", "-1"], ["--edge-slowdown", "> 0"]),
        (["export", "split", "--model", "movenet-lightning-fp32", "--at", "x"], ["--at", "not an integer"]),
        (["export", "split", "--model", "blazepose-full"], ["--model", "not an ONNX model"]),
        (["export", "pdf"], ["invalid choice", "triton"]),
        # profile
        (["profile", "--repeats", "0"], ["--repeats", "[1, 1000]"]),
        (["profile", "--show", "raspberry-pi-99"], ["device profile", "raspberry-pi-99", "rpi4"]),
        (["profile", "--calibrate", "raspberry-pi-99"], ["device profile", "raspberry-pi-99"]),
        (["profile", "--out", folder], ["--out", "is a folder"]),
        # fetch / models
        (["fetch", "--dest", afile], ["--dest", "is a file"]),
        (["models", "--model-dir", missing], ["--model-dir", "does not exist"]),
        # train (checks before torch, a recipe's data or torchrun start)
        (["train", "smoke", "--out", folder, "--steps", "0"], ["--steps", ">= 1"]),
        (["train", "smoke", "--out", folder, "--nproc", "0"], ["--nproc", "[1, 64]"]),
        (["train", "no-such-recipe", "--out", folder], ["recipe 'no-such-recipe' not found", "smoke"]),
        (["train", "smoke", "--out", folder, "--train-device", "tpu"], ["--train-device", "invalid choice", "cuda"]),
        (["train", "smoke", "--out", afile], ["--out", "is a file"]),
        # adapt (checks before torch, labelling or a model loads)
        (["adapt", missing, "--out", folder], ["source", "missing.mp4", "does not exist"]),
        (["adapt", "--out", folder], ["--from-collection", "exactly one"]),
        (["adapt", afile, "--from-collection", folder, "--out", folder], ["--from-collection", "exactly one"]),
        (["adapt", "--from-collection", missing, "--out", folder], ["--from-collection", "does not exist"]),
        (["adapt", afile, "--out", afile], ["--out", "is a file"]),
        (["adapt", afile, "--out", folder, "--frames", "600:10"], ["--frames", "START:STOP"]),
        (["adapt", afile, "--out", folder, "--frames", "ten"], ["--frames", "START:STOP"]),
        (["adapt", afile, "--out", folder, "--steps", "0"], ["--steps", ">= 1"]),
        (["adapt", afile, "--out", folder, "--lr", "0"], ["--lr", "> 0"]),
        (["adapt", afile, "--out", folder, "--gate-fraction", "0.9"], ["--gate-fraction", "<= 0.5"]),
        (["adapt", afile, "--out", folder, "--target-macs", "1.5"], ["--target-macs", "<= 0.95"]),
        (["adapt", afile, "--out", folder, "--student", "resnet"], ["--student", "invalid choice", "pruned"]),
        (["adapt", afile, "--out", folder, "--current", missing], ["--current", "does not exist"]),
        (["adapt", afile, "--out", folder, "--gate-max-risk", "2"], ["--gate-max-risk", "<= 1"]),
        (["adapt", afile, "--out", folder, "--gate-min-crops", "-1"], ["--gate-min-crops", ">= 0"]),
        (["adapt", afile, "--out", folder, "--w-ref", "-1"], ["--w-ref", ">= 0"]),
        (["adapt", afile, "--out", folder, "--float-stem", "9"], ["--float-stem", "[0, 8]"]),
        (["adapt", afile, "--out", folder], ["videos", "found under", "afile.txt"]),
        # compress (checks before torch or a model loads)
        (["compress", "--teacher", missing, "--model", garbage, "--out", folder], ["--teacher", "missing.mp4"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", afile], ["--out", "afile.txt"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--ratio", "1.5"], ["--ratio"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--steps", "-1"], ["--steps"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--device", "raspberry-pi-99"],
         ["raspberry-pi-99"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--progressive",
          "--progressive-steps", "0"], ["--progressive-steps"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--progressive",
          "--progressive-step-ratio", "0.9"], ["--progressive-step-ratio"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--progressive",
          "--progressive-kd-steps", "-5"], ["--progressive-kd-steps"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--student", "--no-student"],
         ["--no-student", "--student"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--method", "sgd"],
         ["--method", "invalid choice", "kd", "feature-kd", "okdhp", "vitkd", "dkd"]),
        (["compress", "--teacher", garbage, "--model", garbage, "--out", folder, "--method", "dkd"],
         ["--method dkd needs --detector", "edgepose train dkd"]),
    ]


def _run(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    return rc, capsys.readouterr().err


def test_every_subcommand_is_covered(files, busy_port):
    covered = {argv[0] for argv, _ in _cases(files, busy_port)}
    assert covered == {m.NAME for m in _commands()}


def test_each_bad_value_is_one_clear_line_with_exit_code_2(files, busy_port, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    monkeypatch.delenv("EDGEPOSE_TEST_UNSET_VAR", raising=False)
    failures = []
    for argv, expected in _cases(files, busy_port):
        rc, err = _run(argv, capsys)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        missing = [e for e in expected if e not in last]
        if rc != 2 or missing or "Traceback" in err:
            failures.append(f"edgepose {' '.join(argv)} -> rc {rc}, missing {missing}:\n{err[-600:]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("argv,needle", [
    (["serve", "--model", "movenet-lightning-int8-onnx", "--host", "256.1.1.1"], "--host"),
    (["eval-video", "x.mp4", "--model", "m", "--reference", "REF"], "video"),
])
def test_a_real_process_prints_no_traceback(argv, needle, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgepose.cli.main", *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**os.environ})
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
