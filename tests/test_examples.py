"""The Raspberry Pi and Jetson examples run headless on real clips; docs/install.md runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOTAL = re.compile(r"^total fps [\d.]+ \| latency p50 [\d.]+ p95 [\d.]+ ms \| budget [\d.]+ ms: (\d+) missed of (\d+) "
                   r"\| offload (\d+)% \(cloud \d+%\) \| dropped (\d+) \| people ([\d.]+)$", re.M)

pytestmark = pytest.mark.backend


def _run(args, *, cwd=REPO, timeout=240, env=None):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _frames(path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_raspberry_pi_example_runs_headless_on_a_real_clip_and_prints_its_stats(assets, tmp_path):
    out = tmp_path / "overlay.mp4"
    proc = _run(["examples/raspberry_pi.py", "--input", str(assets / "data/tfjs_testdata/pose_1.mp4"),
                 "--headless", "--threads", "1", "--max-frames", "45", "--record", str(out)])
    m = TOTAL.search(proc.stdout)
    assert m, proc.stdout
    assert int(m.group(2)) == 45 and float(m.group(5)) >= 0.9  # every frame, one dancer found
    assert "device profile rpi4: budget 66.7 ms/frame (15 fps), 1 threads" in proc.stderr
    assert "model blazepose-full on LiteRTBackend" in proc.stderr
    assert _frames(out) == 45


def test_jetson_example_runs_an_onnx_card_on_the_providers_it_has_and_says_which(assets):
    import onnxruntime as ort

    proc = _run(["examples/jetson.py", "--input", str(assets / "data/tfjs_testdata/pose_1.mp4"), "--headless",
                 "--threads", "1", "--max-frames", "20", "--model", "movenet-thunder-fp32"])
    assert TOTAL.search(proc.stdout), proc.stdout
    assert "device profile jetson-orin-nano: budget 33.3 ms/frame (30 fps)" in proc.stderr
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "not in this onnxruntime build, skipped: TensorrtExecutionProvider, CUDAExecutionProvider" in proc.stderr
        assert "movenet_thunder_fp32.onnx: ONNX Runtime on the CPU (providers CPUExecutionProvider)" in proc.stderr


def test_jetson_example_says_a_tflite_model_runs_on_litert_on_the_cpu(assets):
    proc = _run(["examples/jetson.py", "--input", str(assets / "data/tfjs_testdata/pose_1.mp4"), "--headless",
                 "--threads", "1", "--max-frames", "5"])
    assert "pose_landmark_full.tflite: LiteRT on the CPU" in proc.stderr


def test_multi_person_mode_tracks_several_people_on_a_crowded_clip(assets, tmp_path):
    out = tmp_path / "multi.mp4"
    proc = _run(["examples/raspberry_pi.py", "--input", str(assets / "data/openpose_media/video.avi"),
                 "--headless", "--threads", "1", "--max-frames", "15", "--multi", "movenet-multipose",
                 "--record", str(out)])
    m = TOTAL.search(proc.stdout)
    assert m and float(m.group(5)) >= 1.5, proc.stdout
    assert _frames(out) == 15


def test_offload_url_and_token_reach_the_server(assets):
    from edgepose.server.app import PoseServer, ServerOptions

    with PoseServer.embedded("movenet-thunder-fp32", options=ServerOptions(token="s3cret"), num_threads=1) as srv:
        url = srv.url
        proc = _run(["examples/raspberry_pi.py", "--input", str(assets / "data/opencv_doc/vtest.avi"),
                     "--headless", "--threads", "1", "--max-frames", "60", "--model", "movenet-lightning-int8",
                     "--offload-url", url, "--offload-token", "s3cret"])
        served = srv.stats["infer_ok"]
    m = TOTAL.search(proc.stdout)
    assert m, proc.stdout
    assert f"offloading hard frames to {url}" in proc.stderr
    assert served >= 1 and int(m.group(3)) > 0  # hard frames of this clip went to the server


def test_offload_is_refused_with_a_multi_person_card(assets):
    proc = subprocess.run([sys.executable, "examples/raspberry_pi.py", "--input", "demo", "--headless",
                           "--multi", "movenet-multipose", "--offload-url", "http://127.0.0.1:9"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--offload-url works with single-person models only" in proc.stderr


def _documented_commands() -> list[str]:
    text = (REPO / "docs" / "install.md").read_text()
    blocks = re.findall(r"<!-- no-hardware -->\n```bash\n(.*?)\n```", text, re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip() and not line.startswith("#")]


def test_the_install_guide_marks_its_no_hardware_commands():
    cmds = _documented_commands()
    assert "edgepose fetch" in cmds
    assert "python examples/raspberry_pi.py --input demo --headless --record overlay.mp4" in cmds
    assert "python examples/jetson.py --input demo --headless --record overlay.mp4" in cmds
    assert any(c.startswith("edgepose bench ") for c in cmds)
    # they run verbatim on a fresh setup in tests/test_docs.py
