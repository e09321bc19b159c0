"""The embedded KServe V2 server over real HTTP on loopback, driven by the real tritonclient."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time

import numpy as np
import pytest

from edgepose.server import OnnxServedModel, PoseServedModel, PoseServer, ServedModel, ServerOptions

pytestmark = [pytest.mark.server, pytest.mark.backend]

MODEL = "movenet-lightning-fp32"
TOKEN = "s3cret-token"


def auth() -> dict[str, str]:
    """A fresh header dict per call: tritonclient writes Inference-Header-Content-Length into it."""
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def pose_model():
    from edgepose.models import load_model

    m = load_model(MODEL, num_threads=1)
    yield m
    m.close()


@pytest.fixture(scope="module")
def server(pose_model):
    s = PoseServer([PoseServedModel(pose_model)], options=ServerOptions(token=TOKEN, read_timeout_s=0.5)).start()
    yield s
    s.stop()


@pytest.fixture()
def triton(server):
    import tritonclient.http as th

    c = th.InferenceServerClient(server.url.removeprefix("http://"))
    yield c
    c.close()


def _jpeg(rgb) -> bytes:
    import cv2

    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _raw(server, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection(server.options.host, server.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def _error(body: bytes) -> str:
    return json.loads(body)["error"]


def _crop(pose_jpg):
    from edgepose.models._crop import Roi, crop

    patch, _ = crop(pose_jpg, Roi.from_box(300, 60, 720, 667), 192, 192)
    return patch


def test_tritonclient_health_and_metadata_pass(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready(MODEL, headers=auth())
    meta = triton.get_model_metadata(MODEL, headers=auth())
    assert meta["name"] == MODEL
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"image_bytes": "BYTES", "image": "UINT8"}
    assert meta["outputs"] == [{"name": "keypoints", "datatype": "FP32", "shape": [-1, 17, 3]}]
    assert "binary_tensor_data" in triton.get_server_metadata(headers=auth())["extensions"]


def test_tritonclient_binary_jpeg_infer_matches_the_model_card(triton, pose_model, pose_jpg):
    import cv2
    import tritonclient.http as th

    from edgepose.models._crop import Roi

    patch = _crop(pose_jpg)
    jpg = _jpeg(patch)
    inp = th.InferInput("image_bytes", [1], "BYTES")
    inp.set_data_from_numpy(np.array([jpg], dtype=object))  # binary by default, no Content-Type
    res = triton.infer(MODEL, [inp], headers=auth())
    kp = res.as_numpy("keypoints")
    assert kp.shape == (1, 17, 3) and kp.dtype == np.float32
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    ref = pose_model.estimate(decoded, Roi.full_frame(192, 192))
    np.testing.assert_allclose(kp[0, :, :2], ref.keypoints, atol=1e-3)
    np.testing.assert_allclose(kp[0, :, 2], ref.scores, atol=1e-5)
    assert res.get_response()["parameters"]["edgepose_server_ms"] > 0


def test_tritonclient_json_uint8_infer_equals_binary_infer(triton, pose_jpg):
    import tritonclient.http as th

    patch = _crop(pose_jpg)[::3, ::3].copy()  # 64x64 keeps the JSON body small
    outs = []
    for binary in (False, True):
        inp = th.InferInput("image", list(patch[None].shape), "UINT8")
        inp.set_data_from_numpy(patch[None], binary_data=binary)
        out = th.InferRequestedOutput("keypoints", binary_data=binary)
        outs.append(triton.infer(MODEL, [inp], outputs=[out], headers=auth()).as_numpy("keypoints"))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-4)


def test_missing_token_is_401_but_health_needs_none(server):
    status, headers, body = _raw(server, "GET", f"/v2/models/{MODEL}")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert _error(body) == "missing or wrong bearer token; send 'Authorization: Bearer <token>'"
    assert _raw(server, "GET", f"/v2/models/{MODEL}", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert _raw(server, "GET", "/v2/health/live")[0] == 200


def test_bad_requests_are_400_naming_the_tensor_or_field(server, triton):
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    inp = th.InferInput("image", [1, 16, 16, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(InferenceServerException) as exc:
        triton.infer(MODEL, [inp], headers=auth())
    assert exc.value.status() == "400"
    assert "input 'image' must be UINT8 [N, H, W, 3] with N >= 1, got FP32 [1, 16, 16, 3]" in exc.value.message()
    bad = th.InferInput("image_bytes", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"not a jpeg"], dtype=object))
    with pytest.raises(InferenceServerException, match="input 'image_bytes' element 0 is not a decodable JPEG/PNG"):
        triton.infer(MODEL, [bad], headers=auth())
    path = f"/v2/models/{MODEL}/infer"
    status, _, body = _raw(server, "POST", path, b"{oops", auth())
    assert status == 400 and _error(body).startswith("request header is not valid JSON")
    req = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 8, 8, 3], "data": [0] * 192}],
           "parameters": {"deadline_ms": -1}}
    status, _, body = _raw(server, "POST", path, json.dumps(req).encode(), auth())
    assert (status, _error(body)) == (400, "parameter 'deadline_ms' must be a positive number, got -1")
    status, _, body = _raw(server, "GET", "/v2/models/nope", headers=auth())
    assert (status, _error(body)) == (404, f"unknown model 'nope'; valid choices: {MODEL}")


def test_payload_over_the_limit_is_413(pose_model):
    s = PoseServer([PoseServedModel(pose_model)], options=ServerOptions(max_body_bytes=64 * 1024)).start(warmup=False)
    try:
        status, headers, body = _raw(s, "POST", f"/v2/models/{MODEL}/infer", b"x" * 100_000)
        assert status == 413
        assert _error(body).startswith("payload of 100000 bytes exceeds the server limit of 65536 bytes")
        assert _raw(s, "GET", "/v2/health/ready")[0] == 200
    finally:
        s.stop()  # the model is shared with other tests: not closed here


class _Slow(ServedModel):
    name = "slow"

    def __init__(self, seconds):
        self.seconds = seconds

    def inputs(self):
        return [{"name": "x", "datatype": "FP32", "shape": [-1]}]

    def outputs(self):
        return [{"name": "y", "datatype": "FP32", "shape": [-1]}]

    def infer(self, inputs, parameters):
        time.sleep(self.seconds)
        return {"y": inputs["x"] * 2}


def test_concurrency_limit_is_503_with_retry_after():
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}).encode()
    s = PoseServer([_Slow(0.5)], options=ServerOptions(max_concurrency=1, retry_after_s=2)).start()
    try:
        first = threading.Thread(target=_raw, args=(s, "POST", "/v2/models/slow/infer", body))
        first.start()
        time.sleep(0.15)
        status, headers, resp = _raw(s, "POST", "/v2/models/slow/infer", body)
        first.join()
        assert (status, headers["Retry-After"]) == (503, "2")
        assert "server busy: 1 inferences already running (ServerOptions.max_concurrency)" in _error(resp)
        status, _, resp = _raw(s, "POST", "/v2/models/slow/infer", body)
        assert status == 200 and json.loads(resp)["outputs"][0]["data"] == [2.0]
    finally:
        s.stop()


def test_a_bad_request_does_not_kill_the_server(server, triton, pose_jpg):
    import tritonclient.http as th

    with socket.create_connection((server.options.host, server.port), timeout=5) as sk:  # not HTTP at all
        sk.sendall(b"\x16\x03\x01garbage\r\n\r\n")
        sk.recv(1024)
    with socket.create_connection((server.options.host, server.port), timeout=5) as sk:  # body never arrives
        sk.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                   "Content-Length: 5000\r\n\r\n{\"in".encode())
        reply = sk.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408")
    status, _, _ = _raw(server, "POST", f"/v2/models/{MODEL}/infer", b"{}", {"Content-Length": "abc", **auth()})
    assert status == 400
    assert triton.is_server_live()
    inp = th.InferInput("image_bytes", [1], "BYTES")
    inp.set_data_from_numpy(np.array([_jpeg(_crop(pose_jpg))], dtype=object))
    assert triton.infer(MODEL, [inp], headers=auth()).as_numpy("keypoints").shape == (1, 17, 3)


def _fuzz_http(server, examples):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    path = f"/v2/models/{MODEL}/infer"

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(dtype=st.sampled_from(["UINT8", "FP32", "BYTES", "INT8", "XX"]),
           shape=st.lists(st.integers(0, 40), min_size=0, max_size=5),
           data=st.binary(max_size=300), hdr=st.one_of(st.none(), st.integers(-3, 400),
                          st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=4)),
           name=st.sampled_from(["image", "image_bytes", "other", ""]))
    def check(dtype, shape, data, hdr, name):
        head = json.dumps({"inputs": [{"name": name, "datatype": dtype, "shape": shape,
                                       "parameters": {"binary_data_size": len(data)}}]}).encode()
        headers = auth()
        if hdr is not None:
            headers["Inference-Header-Content-Length"] = str(hdr)
        else:
            headers["Inference-Header-Content-Length"] = str(len(head))
        status, _h, body = _raw(server, "POST", path, head + data, headers)
        if status == 200:  # hypothesis can build a valid request (UINT8 [1, H, W, 3] image)
            assert json.loads(body[: int(_h.get("Inference-Header-Content-Length", len(body)))])["outputs"]
            return
        assert 400 <= status < 500, (status, body)
        assert _error(body)

    check()
    assert _raw(server, "GET", "/v2/health/ready")[0] == 200


def test_fuzzed_http_requests_get_4xx_and_the_server_stays_healthy(server):
    _fuzz_http(server, 60)


@pytest.mark.slow
def test_fuzzed_http_requests_2000(server):
    _fuzz_http(server, 2000)


def _load(server, pose_jpg, clients, requests):
    from edgepose.offload.timing import LatencyStats
    from edgepose.protocol import encode_infer_request

    arr = np.empty(1, dtype=object)
    arr[0] = _jpeg(_crop(pose_jpg))
    body, headers = encode_infer_request({"image_bytes": arr})
    headers.update(auth())
    errors, lat, lock = [], LatencyStats(window=clients * requests), threading.Lock()

    def worker():
        conn = http.client.HTTPConnection(server.options.host, server.port, timeout=30)
        for _ in range(requests):
            t0 = time.perf_counter()
            conn.request("POST", f"/v2/models/{MODEL}/infer", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            with lock:
                lat.add((time.perf_counter() - t0) * 1e3)
                if r.status != 200:
                    errors.append(r.status)
            if r.status == 503:
                time.sleep(0.01)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors, lat


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_concurrent_clients_get_answers_or_503_only(server, pose_jpg):
    errors, lat = _load(server, pose_jpg, clients=3, requests=8)
    assert set(errors) <= {503}
    assert lat.count == 24


@pytest.mark.slow
def test_load_8_clients_x_500_requests_memory_flat(pose_model, pose_jpg):
    opts = ServerOptions(token=TOKEN, max_concurrency=8)
    s = PoseServer([PoseServedModel(pose_model)], options=opts).start()
    try:
        _load(s, pose_jpg, 8, 20)  # grow the per-thread arenas before measuring
        before = _rss_mb()
        errors, lat = _load(s, pose_jpg, clients=8, requests=500)
        after = _rss_mb()
    finally:
        s.stop()
    print(f"8x500: p50 {lat.percentile(50):.1f} ms p99 {lat.percentile(99):.1f} ms rss {before:.0f}->{after:.0f} MB")
    assert errors == []
    assert after - before < 50


def test_triton_export_writes_a_repository_the_server_can_host(tmp_path, pose_jpg, pose_model):
    import tritonclient.http as th

    from edgepose.server.triton import export_triton

    r = export_triton(MODEL, tmp_path, check_image=pose_jpg, backend="onnxruntime")
    cfg = (tmp_path / MODEL / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in cfg and "dims: [ 1, 192, 192, 3 ]" in cfg
    assert (tmp_path / MODEL / "1" / "model.onnx").is_file() and r.max_abs_diff_px <= 1e-2
    patch = _crop(pose_jpg)
    raw = OnnxServedModel(r.onnx_path, name="raw", num_threads=1)
    s = PoseServer([raw, PoseServedModel(pose_model)]).start()
    try:
        c = th.InferenceServerClient(s.url.removeprefix("http://"))
        outs = []
        for name in ("raw", MODEL):
            inp = th.InferInput("image", [1, 192, 192, 3], "UINT8")
            inp.set_data_from_numpy(patch[None])
            outs.append(c.infer(name, [inp]).as_numpy("keypoints"))
        c.close()
    finally:
        s.stop()
        raw.close()
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-3)


def test_a_model_file_is_served_under_the_name_given(tmp_path):
    """``edgepose serve --model NAME=FILE`` (e.g. an int8 build of the teacher) and the embedded server."""
    from edgepose.cli.cmd_serve import served_pose_model
    from edgepose.models import find_file, get_card

    path = find_file(get_card("movenet-lightning-int8").files[0])
    m = served_pose_model(f"lightning-small={path}", 1)
    try:
        assert m.name == "lightning-small" and m.metadata()["name"] == "lightning-small"
    finally:
        m.close()
    with PoseServer.embedded(str(path), num_threads=1, name="lightning-small") as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/v2/models/lightning-small/ready")
        assert conn.getresponse().status == 200
        conn.close()
