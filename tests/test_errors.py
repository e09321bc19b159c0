"""Every error a user can cause is an ``EdgePoseError``: ``except EdgePoseError`` catches them all.

Two checks: the public entry points driven with bad values raise an ``EdgePoseError`` subclass
(and nothing else), and no module of the package raises a bare built-in exception type where a
typed one exists (``ConfigError`` is also a ``ValueError``, ``MissingFileError`` a
``FileNotFoundError``, ``CompressionError`` a ``RuntimeError``: old ``except`` clauses still work).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgepose.errors import EdgePoseError

REPO = Path(__file__).resolve().parent.parent
#: Files that cannot import edgepose (they run inside a peer's or Triton's own Python), and the
#: json ``default=`` hook, whose protocol is a TypeError.
ALLOWED = {"edgepose/bench/peers/_numpy_worker.py", "edgepose/bench/peers/_mediapipe_worker.py",
           "edgepose/server/triton_model.py", "edgepose/bench/report.py"}
BARE = re.compile(r"raise (ValueError|RuntimeError|FileNotFoundError|KeyError|TypeError|OSError|Exception)\(")


def test_no_module_raises_a_bare_builtin_error():
    found = []
    for path in sorted([*(REPO / "edgepose").rglob("*.py"), *(REPO / "compression").rglob("*.py")]):
        rel = path.relative_to(REPO).as_posix()
        if rel in ALLOWED:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if BARE.search(line):
                found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, "raise an edgepose.errors type instead:\n" + "\n".join(found)


def _bad_calls(tmp: Path):
    from edgepose import EstimatorOptions, PoseEstimator
    from edgepose.assets import assets_dir
    from edgepose.bench.suite import load_suite
    from edgepose.models import load_model
    from edgepose.offload.netem import get_link
    from edgepose.profiles import load_profile
    from edgepose.server import ServerOptions
    from edgepose.video.smoothing import make_smoother
    from edgepose.video.sources import open_source

    garbage = tmp / "garbage.onnx"
    garbage.write_bytes(b"\0not a model" * 8)
    bad_suite = tmp / "suite.yaml"
    bad_suite.write_text("cases:\n  - modle: x\n")
    return {
        "load_model unknown name": lambda: load_model("movenet-huge"),
        "load_model missing file": lambda: load_model(tmp / "missing.onnx"),
        "load_model garbage file": lambda: load_model(garbage),
        "load_model bad extension": lambda: load_model(tmp / "model.pt"),
        "EstimatorOptions running_mode": lambda: EstimatorOptions(running_mode="sometimes"),
        "EstimatorOptions smoother": lambda: EstimatorOptions(smoother="kalman"),
        "PoseEstimator unknown model": lambda: PoseEstimator("nope"),
        "make_smoother unknown": lambda: make_smoother("kalman"),
        "open_source missing file": lambda: open_source(str(tmp / "missing.mp4")),
        "ServerOptions port": lambda: ServerOptions(port=70000),
        "ServerOptions max_body_bytes": lambda: ServerOptions(max_body_bytes=10),
        "load_profile unknown": lambda: load_profile("raspberry-pi-99"),
        "load_suite unknown field": lambda: load_suite(bad_suite),
        "get_link unknown": lambda: get_link("carrier-pigeon"),
        "assets_dir missing": lambda: assets_dir(tmp / "no-assets"),
    }


NAMES = ["load_model unknown name", "load_model missing file", "load_model garbage file", "load_model bad extension",
         "EstimatorOptions running_mode", "EstimatorOptions smoother", "PoseEstimator unknown model",
         "make_smoother unknown", "open_source missing file", "ServerOptions port", "ServerOptions max_body_bytes",
         "load_profile unknown", "load_suite unknown field", "get_link unknown", "assets_dir missing"]


@pytest.mark.parametrize("name", NAMES)
def test_public_entry_points_raise_edgepose_errors_on_bad_values(name, tmp_path):
    calls = _bad_calls(tmp_path)
    assert set(calls) == set(NAMES)
    call = calls[name]
    with pytest.raises(Exception) as ei:
        call()
    assert isinstance(ei.value, EdgePoseError), f"{name}: {type(ei.value).__name__}: {ei.value}"
    assert str(ei.value)  # a message, not an empty error


@pytest.mark.torch
def test_compression_entry_points_raise_edgepose_errors_on_bad_values(tmp_path):
    pytest.importorskip("torch")
    from edgepose.compression.data.labels import LabelConfig
    from edgepose.compression.quantize import QuantizeConfig
    from edgepose.compression.train.recipes import load_recipe

    bad_recipe = tmp_path / "r.yaml"
    bad_recipe.write_text("name: r\nmethod: telepathy\n")
    for call in (lambda: QuantizeConfig(calibration="guess"), lambda: LabelConfig(teacher=str(tmp_path / "t.onnx")),
                 lambda: load_recipe(tmp_path / "missing.yaml"), lambda: load_recipe(bad_recipe)):
        with pytest.raises(EdgePoseError):
            call()
