"""The Triton engine: the exported Python-backend repository, a real tritonserver, ``serve --engine triton``.

The first tests run the exported ``model.py`` in this process (no Triton). Those marked ``triton``
start the real ``tritonserver`` of the Triton environment (``python -m edgepose.server.triton_env
setup``; excluded by default, run with ``-m triton``). gRPC is checked with the Triton
environment's own tritonclient[grpc]: edgepose's environment pins protobuf 7, which
tritonclient[grpc] (protobuf < 7) cannot share.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edgepose.server import IMAGE, IMAGE_BYTES, KEYPOINTS, PoseServedModel

MODEL = "movenet-lightning-fp32"

_GRPC_CHECK = """
import sys, numpy as np, tritonclient.grpc as g
url, model, path = sys.argv[1:4]
c = g.InferenceServerClient(url)
assert c.is_server_ready() and c.is_model_ready(model)
i = g.InferInput("image_bytes", [1], "BYTES")
i.set_data_from_numpy(np.array([open(path, "rb").read()], dtype=object))
print(repr(c.infer(model, [i]).as_numpy("keypoints").tolist()))
"""


def _jpg(img: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="module")
def served():
    from edgepose.models import load_model

    m = PoseServedModel(load_model(MODEL, num_threads=1))
    yield m
    m.close()


@pytest.fixture(scope="module")
def repo(tmp_path_factory, pose_jpg):
    from edgepose.server.triton import export_triton

    d = tmp_path_factory.mktemp("triton-repo")
    r = export_triton(MODEL, d, check_image=pose_jpg, threads=1)
    export_triton(MODEL, d, name="batched", check_image=pose_jpg, threads=1, dynamic_batching=True, max_batch=8)
    assert r.backend == "python" and r.max_abs_diff_px <= 1e-2
    return d


@pytest.mark.backend
def test_python_export_answers_what_the_embedded_server_answers(repo, served, pose_jpg):
    from edgepose.server.triton import load_python_model

    cfg = (repo / MODEL / "config.pbtxt").read_text()
    assert 'backend: "python"' in cfg and "max_batch_size: 0" in cfg and "dims: [ -1 ]" in cfg
    bcfg = (repo / "batched" / "config.pbtxt").read_text()
    assert "max_batch_size: 8" in bcfg and "dynamic_batching" in bcfg and "allow_ragged_batch: true" in bcfg
    assert {p.name for p in (repo / MODEL / "1").iterdir()} >= {"model.py", "pose.onnx"}
    pose = load_python_model(repo / MODEL)
    crops = [pose_jpg, pose_jpg[100:400, 300:500], pose_jpg[:37, :91]]  # square, tall, wide and tiny
    for crop in crops:
        want = served.infer({IMAGE: np.ascontiguousarray(crop)[None]}, {})[KEYPOINTS]
        np.testing.assert_allclose(pose.infer(image=np.ascontiguousarray(crop)[None]), want, atol=1e-3)
        jpg = np.array([_jpg(crop)], dtype=object)
        np.testing.assert_allclose(pose.infer(image_bytes=jpg), served.infer({IMAGE_BYTES: jpg}, {})[KEYPOINTS],
                                   atol=1e-3)


@pytest.mark.backend
def test_python_export_refuses_what_the_embedded_server_refuses(repo):
    from edgepose.server.triton import load_python_model

    pose = load_python_model(repo / MODEL)  # model.py loaded from the repository: its own RequestError(ValueError)
    pose.max_crops = 2
    bad = [({}, "exactly one"), ({"image": np.zeros((1, 4, 4, 3), np.uint8)}, "[8, 4096]"),
           ({"image": np.zeros((1, 16, 16, 3), np.float32)}, "UINT8"),
           ({"image_bytes": np.array([b"nope"], dtype=object)}, "not a decodable"),
           ({"image": np.zeros((3, 16, 16, 3), np.uint8)}, "at most 2")]
    for kw, needle in bad:
        with pytest.raises(ValueError, match=re.escape(needle)):
            pose.infer(**kw)


@pytest.mark.backend
def test_missing_triton_environment_names_the_setup_command(tmp_path, monkeypatch):
    from edgepose.errors import EdgePoseError
    from edgepose.server.triton_env import SETUP_COMMAND, env_dir, find_env

    monkeypatch.setenv("EDGEPOSE_TRITON_ENV", str(tmp_path / "none"))
    assert env_dir() == tmp_path / "none"
    with pytest.raises(EdgePoseError, match=re.escape(SETUP_COMMAND)):
        find_env()
    monkeypatch.delenv("EDGEPOSE_TRITON_ENV")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert env_dir() == tmp_path / "edgepose" / "triton-env"


@pytest.fixture(scope="module")
def triton_env():
    from edgepose.server.triton_env import find_env

    return find_env()  # a missing environment fails with the setup command


def _grpc_keypoints(env, url: str, model: str, jpg_path) -> np.ndarray:
    proc = subprocess.run([str(env.python), "-c", _GRPC_CHECK, url, model, str(jpg_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.array(eval(proc.stdout.strip()), dtype=np.float32)  # noqa: S307 - our own repr of a list


@pytest.mark.triton
@pytest.mark.server
def test_tritonserver_loads_the_exported_repository(repo, triton_env, served, pose_jpg, tmp_path):
    import tritonclient.http as th

    from edgepose.server.triton_engine import TritonEngine

    jpg = _jpg(pose_jpg)
    (tmp_path / "crop.jpg").write_bytes(jpg)
    want = served.infer({IMAGE_BYTES: np.array([jpg], dtype=object)}, {})[KEYPOINTS]
    with TritonEngine(repo, env=triton_env, http_port=0, grpc_port=0, metrics_port=0) as t:
        c = th.InferenceServerClient(t.http_url.removeprefix("http://"))
        try:
            assert c.is_model_ready(MODEL) and c.is_model_ready("batched")
            meta = c.get_model_metadata(MODEL)
            assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"image_bytes": "BYTES", "image": "UINT8"}
            i = th.InferInput("image_bytes", [1], "BYTES")
            i.set_data_from_numpy(np.array([jpg], dtype=object))
            np.testing.assert_allclose(c.infer(MODEL, [i]).as_numpy("keypoints"), want, atol=1e-3)
            raw = th.InferInput("image", [2, *pose_jpg.shape], "UINT8")
            raw.set_data_from_numpy(np.stack([pose_jpg, pose_jpg]))
            got = c.infer(MODEL, [raw]).as_numpy("keypoints")
            assert got.shape == (2, 17, 3) and got.dtype == np.float32
            b = th.InferInput("image_bytes", [1, 1], "BYTES")  # dynamic batching: a batch dimension in front
            b.set_data_from_numpy(np.array([[jpg]], dtype=object))
            np.testing.assert_allclose(c.infer("batched", [b]).as_numpy("keypoints"), want, atol=1e-3)
            with pytest.raises(Exception, match="decodable"):
                bad = th.InferInput("image_bytes", [1], "BYTES")
                bad.set_data_from_numpy(np.array([b"nope"], dtype=object))
                c.infer(MODEL, [bad])
        finally:
            c.close()
        np.testing.assert_allclose(_grpc_keypoints(triton_env, t.grpc_url, MODEL, tmp_path / "crop.jpg"), want,
                                   atol=1e-3)
    assert t.proc.returncode == 0


@pytest.mark.triton
@pytest.mark.server
def test_serve_engine_triton_answers_tritonclient_grpc_and_the_offload_client(triton_env, served, pose_jpg,
                                                                                tmp_path):
    import urllib.request

    import tritonclient.http as th

    from edgepose.offload.client import ClientOptions, OffloadClient

    jpg = _jpg(pose_jpg)
    (tmp_path / "crop.jpg").write_bytes(jpg)
    want = served.infer({IMAGE_BYTES: np.array([jpg], dtype=object)}, {})[KEYPOINTS]
    env = {**os.environ, "EDGEPOSE_TRITON_ENV": str(triton_env.root)}
    proc = subprocess.Popen([sys.executable, "-m", "edgepose.cli.main", "serve", "--engine", "triton", "--model",
                             MODEL, "--port", "0", "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"on (http://\S+) \(gRPC (\S+), metrics (\S+)\)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        http_url, grpc_url, metrics_url = m.groups()
        c = th.InferenceServerClient(http_url.removeprefix("http://"))
        i = th.InferInput("image_bytes", [1], "BYTES")
        i.set_data_from_numpy(np.array([jpg], dtype=object))
        np.testing.assert_allclose(c.infer(MODEL, [i]).as_numpy("keypoints"), want, atol=1e-3)
        c.close()
        np.testing.assert_allclose(_grpc_keypoints(triton_env, grpc_url, MODEL, tmp_path / "crop.jpg"), want,
                                   atol=1e-3)
        arr = np.empty(1, dtype=object)
        arr[0] = jpg
        with OffloadClient(http_url, options=ClientOptions(model=MODEL)) as oc:
            replies = []
            for k in range(3):
                p = oc.submit({IMAGE_BYTES: arr}, deadline_s=time.perf_counter() + 5.0, now_ms=1000.0 * k)
                replies.append(p.wait(10.0))
        assert [r.status for r in replies] == ["ok"] * 3, [(r.status, r.error) for r in replies]
        np.testing.assert_allclose(replies[-1].outputs["keypoints"], want, atol=1e-3)
        metrics = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        assert re.search(rf'nv_inference_request_success{{model="{MODEL}",version="1"}} [4-9]', metrics), metrics[:500]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        rc = proc.wait(timeout=60)
    assert rc == 0, proc.stderr.read()[-2000:]
    left = subprocess.run(["pgrep", "-f", "tritonserver.*edgepose-serve-triton-"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "tritonserver outlived edgepose serve"
