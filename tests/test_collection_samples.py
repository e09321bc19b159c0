"""Label-only collection samples (``RuntimeOptions.collect_interval_ms``): a real runtime against the
repo's real server on loopback. Samples feed ``serve --collect`` (marked as samples there), never
become a frame's result, are not offloads in any count, are off by default, and none is lost at close."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from edgepose.errors import ConfigError
from edgepose.offload import ClientOptions, KeyframeConfig, OffloadClient, Pending, PolicyConfig
from edgepose.server import PoseServer, ServerOptions
from edgepose.types import Source

from tests._stallable import Stallable

TEACHER = "movenet-lightning-fp32"  # the fast card keeps the tests short
#: every keyframe is hard (offload whenever the client's bucket lets it)
ALWAYS = PolicyConfig(mode="threshold", enter=0.001, leave=0.0005, max_share=1.0)
#: only a lost pose is hard, and not the first keyframe: (next to) no offloads on pose_1
NEVER = PolicyConfig(mode="threshold", enter=1.0, leave=0.99, acquire=False)


@pytest.fixture(scope="module")
def frames(assets):
    from edgepose.video.sources import VideoFileSource

    return list(VideoFileSource(assets / "data" / "tfjs_testdata" / "pose_1.mp4", max_frames=45))


@pytest.fixture(scope="module")
def served(assets):
    from edgepose.models import load_model

    model = Stallable(load_model(TEACHER, num_threads=1))
    yield model
    model.close()


@pytest.fixture
def server(served):
    started = []

    def start(collect_dir=None):
        served.stall_s = 0.0
        s = PoseServer([served], options=ServerOptions(collect_dir=None if collect_dir is None else str(collect_dir)))
        started.append(s.start(warmup=False))
        return s

    yield start
    for s in started:
        s.stop()  # the module's model stays loaded
    served.stall_s = 0.0


def _runtime(url, *, budget_ms=250.0, policy=ALWAYS, client=None, spy=None, **opts):
    from edgepose import EstimatorOptions, PoseEstimator
    from edgepose.offload.runtime import CloudEdgeRuntime, RuntimeOptions

    est = PoseEstimator("movenet-lightning-int8", options=EstimatorOptions(running_mode="video"), num_threads=1)
    if client is None:
        client = OffloadClient(url, options=ClientOptions(**{"model": TEACHER, "rate_per_s": 1000.0, "burst": 50,
                                                              **opts.pop("client_kw", {})}))
    if spy is not None:  # records the media time of every sample actually sent
        real = client.submit_sample

        def submit_sample(inputs, *, deadline_s, tag=None):
            p = real(inputs, deadline_s=deadline_s, tag=tag)
            if p is not None:
                spy.append(tag[1])
            return p

        client.submit_sample = submit_sample
    return CloudEdgeRuntime(est, client=client, options=RuntimeOptions(
        budget_ms=budget_ms, policy=policy, keyframes=KeyframeConfig(k_max=1), **opts))


def _collection(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "crops").glob("*.json"))]


def _stream(rt, frames) -> list:
    """Pipelined, like a live app: push each frame, take what is ready, flush at the end."""
    out = []
    for f in frames:
        out += rt.push(f.image, f.timestamp_ms)
        out += rt.poll(0.0)
    return out + rt.flush()


@pytest.mark.server
@pytest.mark.backend
def test_samples_feed_the_collection_with_one_result_per_frame_in_order(frames, server, tmp_path):
    import cv2

    from edgepose.server.collect import crop_source

    srv = server(tmp_path / "col")
    sampled: list[int] = []
    # the deployed policy (rate mode): a few offloads; samples at most every 100 ms of media time
    rt = _runtime(srv.url, policy=PolicyConfig(), collect_interval_ms=100.0, spy=sampled)
    try:
        results = _stream(rt, frames)
    finally:
        rt.close()
    s = rt.summary()
    cs, client = s["collection_samples"], s["client"]
    assert [r.frame_index for r in results] == list(range(len(frames)))  # none lost, duplicated, reordered
    assert [r.timestamp_ms for r in results] == [f.timestamp_ms for f in frames]
    assert cs["sent"] == len(sampled) >= 5, s
    assert cs["answered"] == cs["sent"] and cs["failed"] == 0 and cs["in_flight"] == 0, cs
    assert all(b - a >= 100 for a, b in zip(sampled, sampled[1:]))  # at most one per interval of media time
    by_ts = {r.timestamp_ms: r for r in results}
    assert all(by_ts[t].source != Source.CLOUD for t in sampled)  # a sample's answer is never a result
    metas = _collection(tmp_path / "col")
    sources = [crop_source(m) for m in metas]
    offloads_answered = client["ok"] + client["late"]
    assert sources.count("sample") == cs["answered"] and sources.count("offload") == offloads_answered
    assert len(metas) == cs["answered"] + offloads_answered == srv.collector.stats["collected"]
    assert srv.collector.stats["samples"] == cs["answered"]
    size = rt.control.crop_size  # the crop an offload would have sent
    first = next(m for m in metas if m["source"] == "sample")
    img = cv2.imread(str(tmp_path / "col" / "crops" / f"{first['seq']:010d}.jpg"))
    assert img.shape[:2] == (size, size) and np.asarray(first["keypoints"]).shape == (17, 3)


@pytest.mark.server
@pytest.mark.backend
def test_samples_are_not_offloads_and_take_no_offload_token(frames, server):
    """Same frames, the client's token bucket deciding the offloads: with samples on, the offloads, the
    offload share, the trace and the controller's outcomes are those of the run without them."""
    srv = server()  # no collection: a server that does not collect answers a sample like any request
    runs = {}
    for interval in (0.0, 50.0):
        sampled: list[int] = []
        # 5 offloads per second of media time (1 in 6 frames at 30 fps), every keyframe hard, a
        # budget an answer on loopback always meets: which frames are offloaded does not depend on timing
        rt = _runtime(srv.url, budget_ms=1000.0, collect_interval_ms=interval, spy=sampled,
                      client_kw={"rate_per_s": 5.0, "burst": 1})
        try:
            results = [rt.process(f.image, f.timestamp_ms) for f in frames[:36]]
        finally:
            rt.close()
        runs[interval] = (rt.summary(), results, sampled, rt)
    (off, _, none, rt_off), (on, results, sampled, rt_on) = runs[0.0], runs[50.0]
    assert none == [] and off["collection_samples"]["sent"] == 0
    cs = on["collection_samples"]
    assert cs["sent"] == len(sampled) >= 5 and cs["answered"] == cs["sent"], cs
    assert rt_on.client.sample_stats["submitted"] == cs["sent"] and rt_on.client.sample_stats["ok"] == cs["sent"]
    assert on["client"]["submitted"] == off["client"]["submitted"] > 0, (on["client"], off["client"])
    assert on["offload_share"] == off["offload_share"]
    assert len(rt_on.offload_trace()) == len(rt_off.offload_trace()) == on["client"]["submitted"]
    assert rt_on.policy.sent == rt_off.policy.sent
    assert sum(on["control"]["outcomes"].values()) == sum(off["control"]["outcomes"].values())
    assert on["client"]["skipped_rate"] == off["client"]["skipped_rate"]  # the bucket saw the same offloads
    assert on["sources"]["cloud"] <= on["client"]["ok"]  # only offload answers become results
    by_ts = {r.timestamp_ms: r for r in results}
    assert all(by_ts[t].source == Source.EDGE for t in sampled)


@pytest.mark.server
@pytest.mark.backend
def test_off_by_default_no_sample_is_sent(frames, server, tmp_path):
    from edgepose.offload.runtime import RuntimeOptions

    assert RuntimeOptions().collect_interval_ms == 0.0
    srv = server(tmp_path / "col")
    rt = _runtime(srv.url)  # every keyframe offloaded when the client lets it; no collect_interval_ms
    try:
        _stream(rt, frames[:15])
    finally:
        rt.close()
    s = rt.summary()
    assert s["collection_samples"] == {"sent": 0, "answered": 0, "failed": 0, "skipped_busy": 0, "in_flight": 0,
                                       "offloads_refused": 0}
    assert rt.client.sample_stats["submitted"] == 0 and s["client"]["submitted"] > 0
    metas = _collection(tmp_path / "col")
    assert metas and {m["source"] for m in metas} == {"offload"}  # an offload is never marked a sample


@pytest.mark.core
@pytest.mark.parametrize("bad", [-1.0, -0.001, math.nan, math.inf, "500", True, None])
def test_a_bad_collect_interval_is_a_config_error_naming_it(bad):
    from edgepose.offload.runtime import CloudEdgeRuntime, RuntimeOptions

    with pytest.raises(ConfigError, match=r"RuntimeOptions.collect_interval_ms must be a finite number >= 0") as e:
        RuntimeOptions(collect_interval_ms=bad)
    assert f"got {bad!r}" in str(e.value)
    if isinstance(bad, float):  # also through create(), before a model is loaded
        with pytest.raises(ConfigError, match="collect_interval_ms"):
            CloudEdgeRuntime.create(server=None, collect_interval_ms=bad)


@pytest.mark.core
def test_the_app_flag_reaches_the_runtime_options_and_needs_a_server():
    from types import SimpleNamespace

    from edgepose.app import app_arguments, single_person

    p = app_arguments("t", default_input="demo", input_help="i", default_device="rpi4", default_model="m",
                      multi_help="m")
    assert p.parse_args([]).collect_interval_ms == 0.0
    assert p.parse_args(["--collect-interval-ms", "500"]).collect_interval_ms == 500.0
    with pytest.raises(SystemExit, match="give --offload-url too"):
        single_person(SimpleNamespace(collect_interval_ms=500.0, offload_url=None), None, 66.7)
    with pytest.raises(ConfigError, match="got -5.0"):
        single_person(SimpleNamespace(collect_interval_ms=-5.0, offload_url="http://127.0.0.1:9"), None, 66.7)


@pytest.mark.server
@pytest.mark.backend
@pytest.mark.parametrize("case", ["answered", "failed"])
def test_a_sample_in_flight_at_close_is_counted(frames, server, served, monkeypatch, case):
    import edgepose.offload.samples as runtime_mod

    srv = server()
    if case == "failed":  # the server stalls past the sample's deadline: the client gives up on it
        monkeypatch.setattr(runtime_mod, "SAMPLE_DEADLINE_S", 0.2)
    rt = _runtime(srv.url, policy=NEVER, collect_interval_ms=1000.0, client_kw={"late_grace_s": 0.05})
    served.stall_s = 1.0
    t_push = []
    try:
        for f in frames[:10]:
            t0 = time.perf_counter()
            rt.push(f.image, f.timestamp_ms)
            t_push.append(time.perf_counter() - t0)
            if rt.collection_samples["sent"]:
                break
        assert rt.collection_samples["sent"] == 1 and rt.summary()["collection_samples"]["in_flight"] == 1
        assert max(t_push) < 0.5  # the frame loop never waits on the sample (the server stalls 1 s)
    finally:
        rt.close()
    cs = rt.summary()["collection_samples"]
    assert cs["in_flight"] == 0 and cs["answered"] + cs["failed"] == cs["sent"] == 1, cs
    assert cs[case] == 1, cs


@pytest.mark.backend
def test_a_sample_the_client_never_finishes_is_failed_at_close(frames):
    """close() of a client that leaves a sample unanswered: counted failed, not lost."""

    class Unanswering:
        emulator = None

        def __init__(self):
            self.stats = {"submitted": 0}
            self.sample_stats = {"offloads_refused": 0}

        def available(self):
            return True

        def submit(self, inputs, *, deadline_s, now_ms, tag=None):
            return None

        def submit_sample(self, inputs, *, deadline_s, tag=None):
            return Pending(inputs, deadline_s, tag, up_bytes=1, purpose="collect")

        def close(self):
            pass

    rt = _runtime(None, client=Unanswering(), collect_interval_ms=100.0)
    with rt:
        for f in frames[:6]:  # 200 ms of media time: a second sample is due from 100 ms
            rt.push(f.image, f.timestamp_ms)
        rt.flush()
    cs = rt.summary()["collection_samples"]
    assert cs["sent"] == 1 and cs["failed"] == 1 and cs["in_flight"] == 0 and cs["answered"] == 0, cs
    assert cs["skipped_busy"] >= 1  # the later due frames found the first sample still in flight


@pytest.mark.core
def test_the_wire_marker_and_the_collection_record(tmp_path):
    from edgepose.protocol import PURPOSE, PURPOSE_COLLECT, encode_infer_request, parse_infer_request
    from edgepose.server.collect import Collector, crop_source
    from edgepose.video.livestats import LiveStats

    arr = np.empty(1, dtype=object)
    arr[0] = b"\xff\xd8jpeg"
    body, headers = encode_infer_request({"image_bytes": arr}, parameters={"deadline_ms": 5.0, PURPOSE: PURPOSE_COLLECT})
    req = parse_infer_request(body, headers.get("Inference-Header-Content-Length"))
    assert req.parameters[PURPOSE] == "collect" and req.parameters["deadline_ms"] == 5.0
    c = Collector(tmp_path)
    kp = np.zeros((1, 17, 3), np.float32)
    c.add("m", [np.zeros((8, 8, 3), np.uint8)], kp, source="sample")
    c.add("m", [np.zeros((8, 8, 3), np.uint8)], kp)
    metas = _collection(tmp_path)
    assert [m["source"] for m in metas] == ["sample", "offload"] and c.stats["samples"] == 1
    assert crop_source({"seq": 1, "model": "m"}) == "offload"  # a collection written before samples existed
    with pytest.raises(ConfigError, match="collection source"):
        c.add("m", [np.zeros((8, 8, 3), np.uint8)], kp, source="other")
    on, off = LiveStats(collect=True), LiveStats()
    for st in (on, off):
        st.add(5.0, samples=1)
        st.add(5.0)
    assert on.summary().endswith("| samples 1") and "samples" in off.summary()  # a sample is reported when sent
    quiet = LiveStats()
    quiet.add(5.0)
    assert "samples" not in quiet.summary() and LiveStats(collect=True).summary().endswith("| samples 0")
