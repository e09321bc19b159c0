"""Issue 22: the embedded server under hostile or broken clients, over raw sockets on loopback.

Request smuggling / desync, strict framing, per-request deadlines (slowloris), caps on batch
size, bytes in flight and connections, deep JSON, NaN in responses, ``port=0``, the bearer
scheme, and the offload client backing off on 401 / 404. No model file is needed.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from edgepose.offload import ClientOptions, OffloadClient
from edgepose.server import PoseServedModel, PoseServer, ServedModel, ServerOptions
from edgepose.protocol import decode_infer_response, encode_infer_request

pytestmark = pytest.mark.server

TOKEN = "tok"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


class Echo(ServedModel):
    """Doubles ``x`` after ``delay_s``; ``nan`` puts NaN / +-Infinity in the output."""

    name = "echo"

    def __init__(self):
        self.delay_s, self.nan, self.calls = 0.0, False, 0

    def inputs(self):
        return [{"name": "x", "datatype": "FP32", "shape": [-1]}]

    def outputs(self):
        return [{"name": "y", "datatype": "FP32", "shape": [-1]}]

    def infer(self, inputs, parameters):
        self.calls += 1
        time.sleep(self.delay_s)
        y = inputs["x"] * 2
        if self.nan:
            y[:3] = [np.nan, np.inf, -np.inf]
        return {"y": y}


def _server(model=None, **kw):
    opts = dict(token=TOKEN, read_timeout_s=0.5, idle_timeout_s=2.0)
    opts.update(kw)
    return PoseServer([model or Echo()], options=ServerOptions(**opts)).start()


@pytest.fixture()
def echo():
    model = Echo()
    s = _server(model)
    yield s, model
    s.stop()


def _connect(server) -> socket.socket:
    return socket.create_connection((server.options.host, server.port), timeout=3)


def _read_responses(sk: socket.socket, quiet_s: float = 0.4) -> list[tuple[int, dict[str, str], bytes]]:
    """Every HTTP response on the socket until it is closed or stays quiet for ``quiet_s``."""
    buf, out = b"", []
    sk.settimeout(quiet_s)
    while True:
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
            n = int(headers.get("content-length", 0))
            if len(rest) < n:
                break
            out.append((int(lines[0].split()[1]), headers, rest[:n]))
            buf = rest[n:]
        try:
            chunk = sk.recv(65536)
        except (socket.timeout, ConnectionError):
            return out
        if not chunk:
            return out
        buf += chunk


def _closed(sk: socket.socket) -> bool:
    sk.settimeout(1.0)
    try:
        return sk.recv(1) == b""
    except ConnectionError:
        return True
    except socket.timeout:
        return False


def _request(method, path, body=b"", headers="", length=True) -> bytes:
    cl = f"Content-Length: {len(body)}\r\n" if length else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}{cl}\r\n".encode() + body


SMUGGLED = b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"\r\n"  # answers {"name": "edgepose", ...}
X1 = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}).encode()


# -- 1. request smuggling ------------------------------------------------------------------------
@pytest.mark.parametrize("first, status", [
    (_request("POST", "/v2/models/nope/infer", SMUGGLED, AUTH), 404),  # unknown model
    (_request("POST", "/v2/models/echo/versions/9/infer", SMUGGLED, AUTH), 404),  # unknown version
    (_request("POST", "/v2/nowhere", SMUGGLED, AUTH), 404),  # unknown endpoint
    (_request("PUT", "/v2/models/echo/infer", SMUGGLED, AUTH), 405),
    (_request("POST", "/v2/models/echo/ready", SMUGGLED, AUTH), 405),
    (_request("POST", "/v2/models/echo/infer", SMUGGLED), 401),  # no token
    (_request("POST", "/v2/health/live", SMUGGLED), 405),
    (_request("GET", "/v2/health/live", SMUGGLED), 200),  # a GET with a body
])
def test_an_unread_body_is_never_parsed_as_the_next_request(echo, first, status):
    server, _ = echo
    with _connect(server) as sk:
        sk.sendall(first + _request("GET", "/v2/health/ready"))
        got = _read_responses(sk)
    assert [r[0] for r in got] == [status, 200]
    assert got[1][2] == b"{}"  # the health answer, not the smuggled GET /v2


def test_keep_alive_survives_a_401_with_a_body(echo):
    """The offload client with a wrong token: 401s on one connection, never a broken pipe."""
    server, _ = echo
    conn = http.client.HTTPConnection(server.options.host, server.port, timeout=3)
    for _ in range(4):
        conn.request("POST", "/v2/models/echo/infer", body=X1 * 50, headers={"Authorization": "Bearer nope"})
        r = conn.getresponse()
        assert r.status == 401 and r.getheader("Connection") != "close"
        r.read()
    conn.request("POST", "/v2/models/echo/infer", body=X1, headers={"Authorization": f"Bearer {TOKEN}"})
    assert conn.getresponse().status == 200
    conn.close()


# -- 5. strict framing ---------------------------------------------------------------------------
@pytest.mark.parametrize("headers, status", [
    ("Content-Length: +5\r\n", 400),
    ("Content-Length: 1_0\r\n", 400),
    ("Content-Length:  5 \r\n", 400),
    ("Content-Length: 0x5\r\n", 400),
    ("Content-Length: -1\r\n", 400),
    ("Content-Length: 99999999999999999999999\r\n", 400),
    ("Content-Length: 5\r\nContent-Length: 5\r\n", 400),  # duplicate, even if equal
    ("Content-Length: 5\r\nContent-Length: 7\r\n", 400),
    ("Content-Length\t: 5\r\n", 400),  # the parser drops it: a malformed header block
    ("Content-Length: 5\r\n 7\r\n", 400),  # obsolete line folding
    ("Transfer-Encoding: chunked\r\n", 411),
    ("Transfer-Encoding: gzip, chunked\r\n", 411),
    ("Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", 501),
    ("Transfer-Encoding: xchunked\r\n", 501),
])
def test_ambiguous_framing_is_refused_and_the_connection_closed(echo, headers, status):
    server, _ = echo
    for path in ("/v2/models/echo/infer", "/v2/health/live"):
        method = "POST" if "infer" in path else "GET"
        with _connect(server) as sk:
            sk.sendall(_request(method, path, b"", AUTH + headers, length=False) + b"hello" + SMUGGLED)
            got = _read_responses(sk)
            assert [r[0] for r in got] == [status], (path, got)
            assert got[0][1]["connection"] == "close" and json.loads(got[0][2])["error"]
            assert _closed(sk)


def test_plain_content_length_still_works_and_keeps_the_connection(echo):
    server, _ = echo
    with _connect(server) as sk:
        sk.sendall(_request("POST", "/v2/models/echo/infer", X1, AUTH) * 2)
        got = _read_responses(sk)
    assert [r[0] for r in got] == [200, 200] and json.loads(got[1][2])["outputs"][0]["data"] == [2.0]


# -- 4. slow clients -----------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["headers", "body"])
def test_a_trickled_request_gets_408_at_the_total_deadline(echo, stage):
    """1 byte / 0.1 s never trips a per-recv timeout of 0.5 s, but the request's 0.5 s budget."""
    server, _ = echo
    head = _request("POST", "/v2/models/echo/infer", b"", AUTH, length=False)[:-2] + b"Content-Length: 50\r\n\r\n"
    prefix, trickle = (b"", head) if stage == "headers" else (head, b"{" * 50)
    with _connect(server) as sk:
        sk.sendall(prefix)
        t0 = time.perf_counter()
        try:
            for b in trickle:
                sk.sendall(bytes([b]))
                time.sleep(0.1)
                if time.perf_counter() - t0 > 3:
                    break
        except ConnectionError:
            pass
        got = _read_responses(sk, quiet_s=1.0)
        elapsed = time.perf_counter() - t0
    assert [r[0] for r in got] == [408] and "ServerOptions.read_timeout_s" in json.loads(got[0][2])["error"]
    assert got[0][1]["connection"] == "close"
    assert elapsed < 2.5


def test_an_idle_connection_is_closed_after_the_idle_timeout():
    s = _server(idle_timeout_s=0.3)
    try:
        with _connect(s) as sk:
            t0 = time.perf_counter()
            assert _closed(sk) and time.perf_counter() - t0 < 0.9
    finally:
        s.stop()


# -- 3. connections, bytes in flight, slot before parse ------------------------------------------
def test_connections_over_the_cap_get_503_and_the_cap_frees_up():
    s = _server(max_connections=2, retry_after_s=3)
    try:
        held = [_connect(s) for _ in range(2)]
        time.sleep(0.2)
        with _connect(s) as sk:
            sk.sendall(_request("GET", "/v2/health/live"))
            got = _read_responses(sk)
        assert [r[0] for r in got] == [503] and got[0][1]["retry-after"] == "3"
        assert "2 connections already open (ServerOptions.max_connections)" in json.loads(got[0][2])["error"]
        assert s.stats["refused_connections"] == 1
        for sk in held:
            sk.close()
        time.sleep(0.2)
        with _connect(s) as sk:
            sk.sendall(_request("GET", "/v2/health/live"))
            assert [r[0] for r in _read_responses(sk)] == [200]
    finally:
        s.stop()


def test_bytes_in_flight_over_the_cap_get_503_before_the_body_is_read():
    s = _server(max_body_bytes=64 * 1024, max_bytes_in_flight=64 * 1024, read_timeout_s=2.0)
    try:
        with _connect(s) as slow:  # announces 60 000 bytes and sends 10: holds 60 000 of the budget
            slow.sendall(_request("POST", "/v2/models/echo/infer", b"", AUTH, length=False)[:-2]
                         + b"Content-Length: 60000\r\n\r\n" + b"{" * 10)
            time.sleep(0.2)
            with _connect(s) as sk:
                sk.sendall(_request("POST", "/v2/models/echo/infer", X1 + b" " * 9000, AUTH))
                got = _read_responses(sk)
            assert [r[0] for r in got] == [503] and got[0][1]["retry-after"] == "1"
            assert "(ServerOptions.max_bytes_in_flight)" in json.loads(got[0][2])["error"]
        time.sleep(0.1)
        with _connect(s) as sk:  # the budget is back once the slow request is gone
            sk.sendall(_request("POST", "/v2/models/echo/infer", X1 + b" " * 9000, AUTH))
            assert [r[0] for r in _read_responses(sk)] == [200]
    finally:
        s.stop()


def test_a_busy_server_refuses_before_parsing_the_body():
    """With every slot taken, even an unparseable body gets 503 (it was never parsed) and the
    connection stays usable (the body was drained)."""
    model = Echo()
    model.delay_s = 0.6
    s = _server(model, max_concurrency=1)
    try:
        first = _connect(s)
        first.sendall(_request("POST", "/v2/models/echo/infer", X1, AUTH))  # holds the only slot for 0.6 s
        time.sleep(0.2)
        with _connect(s) as sk:
            sk.sendall(_request("POST", "/v2/models/echo/infer", b"[" * 50_000, AUTH)
                       + _request("GET", "/v2/health/live"))
            got = _read_responses(sk)
        assert [r[0] for r in got] == [503, 200] and model.calls == 1
        assert [r[0] for r in _read_responses(first, 1.0)] == [200]
        first.close()
    finally:
        s.stop()


# -- 2. batch cap and the deadline during inference ------------------------------------------------
def test_a_batch_over_the_cap_is_413_naming_the_cap(echo):
    server, model = echo
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [17], "data": [0.0] * 17}]}).encode()
    with _connect(server) as sk:
        sk.sendall(_request("POST", "/v2/models/echo/infer", body, AUTH))
        got = _read_responses(sk)
    assert [r[0] for r in got] == [413] and model.calls == 0
    assert json.loads(got[0][2])["error"] == ("input 'x' holds a batch of 17 items; the server cap is 16 per request "
                                              "(ServerOptions.max_batch): split it into requests of at most 16")


class _SlowPoseModel:
    """Stands in for a pose model card: 40 ms per crop."""

    name, input_size, backend = "slowpose", (32, 32), SimpleNamespace(name="ort")

    def __init__(self):
        self.crops = 0

    def estimate(self, img, roi):
        self.crops += 1
        time.sleep(0.04)
        return SimpleNamespace(keypoints=np.zeros((17, 2), np.float32), scores=np.ones(17, np.float32))

    def close(self):
        pass


def test_deadline_cuts_a_batch_off_between_crops_with_504():
    pose = _SlowPoseModel()
    s = PoseServer([PoseServedModel(pose)], options=ServerOptions(max_batch=64)).start(warmup=False)
    try:
        imgs = np.zeros((40, 32, 32, 3), np.uint8)  # 40 x 40 ms = 1.6 s of work
        body, headers = encode_infer_request({"image": imgs}, parameters={"deadline_ms": 150})
        conn = http.client.HTTPConnection(s.options.host, s.port, timeout=5)
        t0 = time.perf_counter()
        conn.request("POST", "/v2/models/slowpose/infer", body=body, headers=headers)
        r = conn.getresponse()
        elapsed, msg = time.perf_counter() - t0, json.loads(r.read())["error"]
        assert r.status == 504 and elapsed < 0.5 and pose.crops < 10
        assert msg.startswith("deadline_ms passed after ") and msg.split()[3] == str(pose.crops)
        body, headers = encode_infer_request({"image": imgs[:3]}, parameters={"deadline_ms": 5000})
        conn.request("POST", "/v2/models/slowpose/infer", body=body, headers=headers)  # same connection
        r = conn.getresponse()
        outs, _ = decode_infer_response(r.read(), r.getheader("Inference-Header-Content-Length"))
        assert r.status == 200 and outs["keypoints"].shape == (3, 17, 3)
        conn.close()
    finally:
        s.stop()


# -- 6. deep JSON, NaN, port 0, bearer scheme, client backoff ----------------------------------------
@pytest.mark.parametrize("body", [b"[" * 50_000, b'{"inputs": ' + b"[" * 50_000, b'{"a":' * 30_000])
def test_deeply_nested_json_is_400_not_500(echo, body):
    server, _ = echo
    with _connect(server) as sk:
        sk.sendall(_request("POST", "/v2/models/echo/infer", body, AUTH))
        got = _read_responses(sk)
    assert [r[0] for r in got] == [400] and "nested too deeply" in json.loads(got[0][2])["error"]


def _strict_json(data: bytes):
    def bad(name):
        raise AssertionError(f"invalid JSON constant {name} in a response")

    return json.loads(data, parse_constant=bad)


def test_responses_never_carry_nan_or_infinity(echo):
    server, model = echo
    model.nan = True
    x = np.arange(5, dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [5], "data": x.tolist()}]}).encode()
    with _connect(server) as sk:
        sk.sendall(_request("POST", "/v2/models/echo/infer", body, AUTH))
        (status, _, data), = _read_responses(sk)
    assert status == 200 and _strict_json(data)["outputs"][0]["data"] == [None, None, None, 6.0, 8.0]
    outs, _ = decode_infer_response(data, None)  # the client reads null back as NaN
    np.testing.assert_array_equal(outs["y"], [np.nan, np.nan, np.nan, 6.0, 8.0])
    body, headers = encode_infer_request({"x": x})  # binary outputs keep the exact values
    headers["Authorization"] = f"Bearer {TOKEN}"
    conn = http.client.HTTPConnection(server.options.host, server.port, timeout=3)
    conn.request("POST", "/v2/models/echo/infer", body=body, headers=headers)
    r = conn.getresponse()
    outs, _ = decode_infer_response(r.read(), r.getheader("Inference-Header-Content-Length"))
    conn.close()
    np.testing.assert_array_equal(outs["y"], [np.nan, np.inf, -np.inf, 6.0, 8.0])


def test_serve_forever_reports_the_real_port_when_asked_for_port_0():
    s = PoseServer([Echo()], options=ServerOptions(port=0))
    ready = []
    t = threading.Thread(target=s.serve_forever, kwargs={"on_ready": lambda srv: ready.append(srv.url)}, daemon=True)
    t.start()
    deadline = time.perf_counter() + 5
    while not ready and time.perf_counter() < deadline:
        time.sleep(0.01)
    try:
        assert ready and not ready[0].endswith(":0") and ready[0] == s.url and s.port > 0
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=3)
        conn.request("GET", "/v2/health/ready")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        s.stop()
        t.join(timeout=5)
    assert not t.is_alive()
    assert PoseServer([Echo()], options=ServerOptions(port=0)).bind().port > 0  # bind() alone also tells


@pytest.mark.parametrize("value, status", [
    (f"Bearer {TOKEN}", 200), (f"bearer {TOKEN}", 200), (f"BEARER {TOKEN}", 200), (f"  Bearer   {TOKEN} ", 200),
    ("Bearer nope", 401), (f"Basic {TOKEN}", 401), (TOKEN, 401), ("Bearer", 401), ("", 401),
])
def test_the_bearer_scheme_is_case_insensitive(echo, value, status):
    server, _ = echo
    with _connect(server) as sk:
        sk.sendall(_request("GET", "/v2/models/echo", headers=f"Authorization: {value}\r\n" if value else ""))
        assert [r[0] for r in _read_responses(sk)] == [status]


@pytest.mark.parametrize("kw, code", [({"token": "nope"}, 401), ({"model": "nope"}, 404)])
def test_the_offload_client_backs_off_on_401_and_404(echo, kw, code):
    server, _ = echo
    opts = dict(model="echo", token=TOKEN, rate_per_s=1000.0, burst=100, backoff_base_s=0.05, backoff_max_s=0.3)
    opts.update(kw)
    with OffloadClient(server.url, options=ClientOptions(**opts)) as c:
        x = {"x": np.arange(4, dtype=np.float32)}
        r = c.submit(x, deadline_s=time.perf_counter() + 1, now_ms=0).wait(2.0)
        assert r.status == "error" and r.error.startswith(f"HTTP {code}: ")
        assert not c.available() and c.submit(x, deadline_s=time.perf_counter() + 1, now_ms=1) is None
        assert c.stats["skipped_backoff"] == 1 and c.backoff.failures == 1
        errors = [r.error]
        for i in range(3):  # after each backoff: the same clean answer, never a broken pipe
            while not c.available():
                time.sleep(0.02)
            errors.append(c.submit(x, deadline_s=time.perf_counter() + 1, now_ms=10 + i).wait(2.0).error)
        assert all(e.startswith(f"HTTP {code}: ") for e in errors), errors


def test_tritonclient_keeps_working_after_404_and_401(echo):
    """The issue's tritonclient run: valid requests after a 404 / 401 on the same client failed
    with HTTPParseError (the error's body was parsed as the next response)."""
    th = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    server, _ = echo
    c = th.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        def infer(model, token=TOKEN):
            inp = th.InferInput("x", [3], "FP32")
            inp.set_data_from_numpy(np.arange(3, dtype=np.float32))
            return c.infer(model, [inp], headers={"Authorization": f"Bearer {token}"})

        for model, token, code in [("nope", TOKEN, "404"), ("echo", "wrong", "401")] * 3:
            with pytest.raises(InferenceServerException) as exc:
                infer(model, token)
            assert exc.value.status() == code
            for _ in range(3):
                np.testing.assert_array_equal(infer("echo").as_numpy("y"), [0.0, 2.0, 4.0])
    finally:
        c.close()


def test_an_onnx_batch_on_a_dynamic_axis_is_cut_off_between_parts(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgepose.server import DeadlineExceededError, OnnxServedModel
    from edgepose.server.served import request_deadline

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "double.onnx")
    served = OnnxServedModel(tmp_path / "double.onnx", name="double", num_threads=1)
    try:
        feeds = {"x": np.arange(20, dtype=np.float32).reshape(10, 2)}
        whole = served.infer(feeds, {})["y"]
        with request_deadline(time.perf_counter() + 60):
            np.testing.assert_array_equal(served.infer(feeds, {})["y"], whole)
        with request_deadline(time.perf_counter() - 1), pytest.raises(DeadlineExceededError,
                                                                     match="after 4 of 10 batch items") as exc:
            served.infer(feeds, {})  # passed: only the first part runs
        assert exc.value.status == 504
    finally:
        served.close()
