"""``import edgepose`` pulls in numpy only: no torch, onnxruntime, OpenCV or LiteRT."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.core

HEAVY = ("torch", "onnxruntime", "cv2", "ai_edge_litert", "tflite_runtime", "onnx", "matplotlib")


@pytest.mark.parametrize("stmt", [
    "import edgepose",
    "import edgepose.types, edgepose.errors",
    "from edgepose import PoseEstimator, Keypoint, PoseResult",
])
def test_import_pulls_in_no_heavy_runtime(stmt):
    code = f"import sys; {stmt}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_runtime_package_never_imports_torch_even_when_running_a_model():
    code = ("import os, sys, numpy as np; from edgepose.models import load_model; "
            "from edgepose.models._crop import Roi; "
            "m = load_model('movenet-lightning-fp32'); m.estimate(np.zeros((64, 64, 3), np.uint8), Roi.full_frame(64, 64)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
