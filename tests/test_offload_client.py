"""The asynchronous offload client against a real server on loopback."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgepose.offload import ClientOptions, LinkSpec, NetworkEmulator, OffloadClient
from edgepose.server import PoseServer, ServedModel, ServerOptions

pytestmark = pytest.mark.server


class Echo(ServedModel):
    """Doubles ``x`` after ``delay_s`` (a stand-in for a slow or stalled model)."""

    name = "echo"

    def __init__(self):
        self.delay_s = 0.0

    def inputs(self):
        return [{"name": "x", "datatype": "FP32", "shape": [-1]}]

    def outputs(self):
        return [{"name": "y", "datatype": "FP32", "shape": [-1]}]

    def infer(self, inputs, parameters):
        time.sleep(self.delay_s)
        return {"y": inputs["x"] * 2}


@pytest.fixture()
def echo():
    model = Echo()
    s = PoseServer([model], options=ServerOptions(token="tok")).start()
    yield s, model
    s.stop()


def _client(server, **kw):
    emu = kw.pop("emulator", None)
    opts = dict(model="echo", token="tok", rate_per_s=1000.0, burst=100, backoff_base_s=0.05, backoff_max_s=0.2)
    opts.update(kw)
    return OffloadClient(server.url, options=ClientOptions(**opts), emulator=emu)


X = {"x": np.arange(4, dtype=np.float32)}


def _send(c, deadline_s=1.0, ts=0):
    return c.submit(X, deadline_s=time.perf_counter() + deadline_s, now_ms=ts)


def test_on_time_answer_is_ok_and_never_blocks_submit(echo):
    server, _ = echo
    with _client(server) as c:
        t0 = time.perf_counter()
        p = _send(c)
        assert (time.perf_counter() - t0) < 0.05  # submit returns at once
        r = p.wait(2.0)
        assert r.status == "ok"
        np.testing.assert_array_equal(r.outputs["y"], X["x"] * 2)
        assert r.server_ms > 0 and c.stats["ok"] == 1


def test_late_answer_is_dropped_and_counted(echo):
    server, model = echo
    model.delay_s = 0.3
    with _client(server) as c:
        p = _send(c, deadline_s=0.1)
        assert p.wait(0.1) is None  # not there by the deadline
        assert p.wait(2.0).status == "late"
        assert c.stats["late"] == 1 and c.stats["ok"] == 0


def test_emulated_link_delay_and_loss_apply_in_the_transport(echo):
    server, _ = echo
    emu = NetworkEmulator(LinkSpec("t", uplink_mbps=1.0, downlink_mbps=100.0, rtt_ms=40.0), seed=0)
    with _client(server, emulator=emu) as c:
        r = _send(c).wait(2.0)
        assert r.status == "ok" and r.rtt_ms >= 40.0 + 0.9  # rtt + ~120 B at 1 Mbit/s
        emu.cut()
        t0 = time.perf_counter()
        r = _send(c, deadline_s=0.15).wait(2.0)
        assert r.status == "lost" and time.perf_counter() - t0 >= 0.14  # learnt only at the deadline
        assert c.stats["lost"] == 1


def test_server_gone_backs_off_then_reconnects(echo):
    server, model = echo
    port = server.port
    with _client(server, workers=1) as c:
        assert _send(c).wait(2.0).status == "ok"
        server.stop()
        r = _send(c).wait(2.0)
        assert r.status == "error" and "Error" in r.error
        assert not c.available() and _send(c) is None and c.stats["skipped_backoff"] == 1
        again = PoseServer([model], options=ServerOptions(token="tok", port=port)).start()
        try:
            deadline = time.perf_counter() + 3.0
            reply = None
            while time.perf_counter() < deadline:
                p = _send(c)
                reply = p.wait(2.0) if p is not None else None
                if reply is not None and reply.status == "ok":
                    break
                time.sleep(0.05)
            assert reply is not None and reply.status == "ok"
            assert c.backoff.failures == 0
        finally:
            again.stop()


def test_rate_limit_and_in_flight_limit_skip_without_blocking(echo):
    server, model = echo
    model.delay_s = 0.2
    with _client(server, workers=1, rate_per_s=1.0, burst=1) as c:
        p = _send(c, ts=0)
        assert p is not None
        assert _send(c, ts=10) is None and c.stats["skipped_busy"] == 1
        p.wait(2.0)
        assert _send(c, ts=20) is None and c.stats["skipped_rate"] == 1  # 1/s: no token 20 ms later
        assert _send(c, ts=1100) is not None


def test_wrong_token_is_an_error_not_a_crash(echo):
    server, _ = echo
    with _client(server, token="nope") as c:
        r = _send(c).wait(2.0)
        assert r.status == "error"
        assert r.error == "HTTP 401: missing or wrong bearer token; send 'Authorization: Bearer <token>'"


def test_kept_alive_connection_closed_by_the_server_while_idle_is_reopened():
    """A gap between offloads longer than the server's idle timeout (a quiet scene, an adaptation pause)
    is not a failure: the next request goes out on a fresh connection, without backing off."""
    s = PoseServer([Echo()], options=ServerOptions(token="tok", idle_timeout_s=0.2)).start()
    try:
        with _client(s, workers=1) as c:
            assert _send(c).wait(2.0).status == "ok"
            time.sleep(0.6)
            r = _send(c).wait(2.0)
            assert r.status == "ok", r.error
            assert c.stats["errors"] == 0 and c.backoff.failures == 0
    finally:
        s.stop()
