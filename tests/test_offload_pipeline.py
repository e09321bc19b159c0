"""The pipelined runtime (push / poll / flush) with a scripted client: holds, ordering, late answers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgepose.offload import KeyframeConfig, OffloadControlConfig, Pending, PolicyConfig, Reply
from edgepose.offload.netem import get_link
from edgepose.server.served import KEYPOINTS
from edgepose.types import Source

pytestmark = [pytest.mark.backend]

ALWAYS = PolicyConfig(mode="threshold", enter=0.001, leave=0.0005, max_share=1.0)


class ScriptedClient:
    """Stands in for OffloadClient: keeps each request; the test answers it when it likes."""

    emulator = None

    def __init__(self):
        self.sent: list[Pending] = []
        self.stats = {"submitted": 0, "ok": 0, "late": 0}

    def available(self) -> bool:
        return True

    def submit(self, inputs, *, deadline_s, now_ms, tag=None):
        p = Pending(inputs, deadline_s, tag, up_bytes=sum(len(x) for x in inputs["image_bytes"]))
        self.sent.append(p)
        self.stats["submitted"] += 1
        return p

    def answer(self, p: Pending, xy=(128.0, 128.0), score=0.9) -> None:
        """Answer with every keypoint at ``xy`` of the 256 px crop ("late" after its deadline, as the client does)."""
        out = np.zeros((1, 17, 3), np.float32)
        out[0, :, :2] = xy
        out[0, :, 2] = score
        late = time.perf_counter() > p.deadline_s
        self.stats["late" if late else "ok"] += 1
        p._complete(Reply("late" if late else "ok", {KEYPOINTS: out}, rtt_ms=5.0, server_ms=1.0))

    def close(self):
        pass


@pytest.fixture(scope="module")
def frames(assets):
    from edgepose.video.sources import VideoFileSource

    return list(VideoFileSource(assets / "data" / "tfjs_testdata" / "pose_1.mp4", max_frames=30))


def _runtime(client, **opts):
    from edgepose import EstimatorOptions, PoseEstimator
    from edgepose.offload.runtime import CloudEdgeRuntime, RuntimeOptions

    est = PoseEstimator("movenet-lightning-int8", options=EstimatorOptions(running_mode="video"), num_threads=1)
    opts.setdefault("policy", ALWAYS)
    opts.setdefault("keyframes", KeyframeConfig(k_max=1))
    return CloudEdgeRuntime(est, client=client, link=get_link("loopback"), options=RuntimeOptions(**opts))


def test_a_held_frame_does_not_block_intake_and_results_stay_in_order(frames):
    client = ScriptedClient()
    rt = _runtime(client, budget_ms=2000.0, result_delay_ms=1500.0)
    with rt:
        out = rt.push(frames[0].image, frames[0].timestamp_ms)
        assert out == [] and len(client.sent) == 1  # frame 0 is held for its answer
        out += rt.push(frames[1].image, frames[1].timestamp_ms)  # taken in at once, held behind frame 0
        out += rt.push(frames[2].image, frames[2].timestamp_ms)
        assert out == [] and rt.next_due() is not None
        client.answer(client.sent[0])
        out += rt.poll(1.0)
        for p in client.sent[1:]:
            client.answer(p)
        out += rt.flush()
    assert [r.frame_index for r in out] == [0, 1, 2]
    assert [r.source for r in out] == [Source.CLOUD] * 3
    assert out[0].pose.keypoints.shape == (17, 2) and out[0].deadline_met is True
    assert rt.summary()["control"]["outcomes"]["on_time"] == 3


def test_a_frame_whose_answer_misses_the_hold_is_released_with_its_edge_pose(frames):
    client = ScriptedClient()
    rt = _runtime(client, budget_ms=1000.0, result_delay_ms=30.0)
    with rt:
        out = rt.push(frames[0].image, frames[0].timestamp_ms)
        out += rt.poll(0.5)  # nobody answers: released at its due time, not later
        assert [r.source for r in out] == [Source.EDGE] and out[0].timings_ms["hold"] < 500
        client.answer(client.sent[0])  # the answer comes after all
        roi_before = rt.estimator._roi
        out += rt.push(frames[1].image, frames[1].timestamp_ms)
        out += rt.flush()
        s = rt.summary()
    assert [r.frame_index for r in out] == [0, 1]
    assert s["control"]["outcomes"]["late"] == 1 and s["late_reseeds"] == 0  # counted, not used (default)
    assert roi_before is not None


def test_a_late_answer_re_seeds_the_tracker_only_when_asked_to(frames):
    client = ScriptedClient()
    rt = _runtime(client, budget_ms=1000.0, result_delay_ms=0.0, late_reseed_ms=500.0,
                  control=OffloadControlConfig(probe_every=1))
    with rt:
        out = rt.push(frames[0].image, frames[0].timestamp_ms)  # no hold: released at once
        assert [r.source for r in out] == [Source.EDGE]
        client.answer(client.sent[0], xy=(10.0, 10.0))
        out += rt.push(frames[1].image, frames[1].timestamp_ms)
        out += rt.flush()
    assert rt.late_reseeds == 1


def test_hold_stays_within_the_budget_and_under_the_declared_delay(frames):
    rt = _runtime(ScriptedClient(), budget_ms=100.0, result_delay_ms=40.0)
    with rt:
        assert rt.hold_ms() <= 40.0
        for f in frames[:5]:
            rt.push(f.image, f.timestamp_ms)
        rt.flush()
        assert rt.hold_ms() <= 100.0 - rt.options.policy.margin_ms
    from edgepose.offload.runtime import RuntimeOptions

    with pytest.raises(ValueError, match=r"RuntimeOptions.result_delay_ms must be None or in \[0, budget_ms=50\)"):
        RuntimeOptions(budget_ms=50.0, result_delay_ms=60.0)


def test_process_after_push_asks_for_flush_first(frames):
    from edgepose.errors import EdgePoseError

    client = ScriptedClient()
    rt = _runtime(client, budget_ms=2000.0, result_delay_ms=1000.0)
    with rt:
        rt.push(frames[0].image, frames[0].timestamp_ms)
        with pytest.raises(EdgePoseError, match=r"process\(\) called with 1 frame\(s\) still held from push\(\); "
                                                "call flush\\(\\) first"):
            rt.process(frames[1].image, frames[1].timestamp_ms)
        client.answer(client.sent[0])
        assert [r.frame_index for r in rt.flush()] == [0]


def test_answers_that_never_come_in_time_lower_the_offload_rate(frames):
    client = ScriptedClient()
    rt = _runtime(client, budget_ms=1000.0, result_delay_ms=0.0,  # nothing can be on time
                  control=OffloadControlConfig(window=4, cooldown=4, min_scale=0.25, probe_every=2),
                  policy=PolicyConfig(mode="threshold", enter=0.001, leave=0.0005, max_share=0.5, burst=1))
    results = []
    with rt:
        for f in frames:
            results += rt.push(f.image, f.timestamp_ms)
            for p in client.sent:
                if not p.done():
                    client.answer(p)
        results += rt.flush()
    assert [r.frame_index for r in results] == list(range(len(frames)))
    assert rt.control.rate_scale == rt.policy.rate_scale == 0.25
    assert client.stats["submitted"] < 0.5 * len(frames)  # the cap alone would allow half the frames


def test_hold_ends_before_a_later_frame_whose_edge_run_could_end_past_the_budget(frames):
    """The hold runs to budget - margin unless a later frame's push would be running at that point."""
    from edgepose.offload.runtime import CloudEdgeRuntime

    rt = _runtime(None, budget_ms=66.7)
    with rt:
        def hold(period_ms, step_ms):
            rt._period, rt._step = type(rt._step)(window=30), type(rt._step)(window=30)
            for _ in range(5):
                rt._period.add(period_ms)
                rt._step.add(step_ms)
            return CloudEdgeRuntime.hold_ms(rt)

        end = 66.7 - rt.options.policy.margin_ms
        assert hold(33.3, 8.0) == pytest.approx(end)  # 30 fps: the next push ends at 41 ms, well before
        assert hold(100.0, 8.0) == pytest.approx(end)  # 10 fps: no later frame inside the budget
        assert hold(60.0, 8.0) == pytest.approx(59.0)  # its push (60-68 ms) would end past the budget
        assert hold(5.0, 8.0) == pytest.approx(end - 8.0)  # frames faster than a push: keep a push back


@pytest.mark.parametrize("acquire", [False, True])
def test_in_a_hard_stretch_the_crop_is_sent_before_the_edge_model_runs(frames, acquire):
    import dataclasses

    client = ScriptedClient()
    rt = _runtime(client, budget_ms=1000.0, result_delay_ms=500.0,
                  policy=dataclasses.replace(ALWAYS, acquire=acquire))
    with rt:
        edge_start = []
        detect = rt.estimator.detect_for_video

        def timed(image, ts):
            edge_start.append(time.perf_counter())
            return detect(image, ts)

        rt.estimator.detect_for_video = timed
        for f in frames[:4]:
            rt.push(f.image, f.timestamp_ms)
            for p in client.sent:
                if not p.done():
                    client.answer(p)
        rt.flush()
    assert len(client.sent) == 4
    # the first frame starts the hard stretch: sent after its edge run (with PolicyConfig.acquire:
    # before it, the whole frame: the server picks the person); the others before theirs
    assert (client.sent[0].t_submit < edge_start[0]) == acquire
    assert all(p.t_submit < t for p, t in zip(client.sent[1:], edge_start[1:]))
    if acquire:  # the first crop is the whole (square-padded) frame: its transform maps 256 px to > 256 px
        m = client.sent[0].tag[0]
        assert abs(float(np.linalg.det(np.asarray(m)[:, :2]))) < 1.0


def test_offload_trace_gives_each_offloaded_frame_its_timeline(frames):
    client = ScriptedClient()
    rt = _runtime(client, budget_ms=1000.0, result_delay_ms=500.0)
    with rt:
        for f in frames[:3]:
            rt.push(f.image, f.timestamp_ms)
            for p in client.sent:
                if not p.done():
                    client.answer(p)
        rt.flush()
        trace = rt.offload_trace()
    assert [t["frame"] for t in trace] == [0, 1, 2]
    for t in trace:
        assert t["status"] == "ok" and t["used"]
        assert 0 <= t["submit"] <= t["answer"] <= t["released"] <= t["due"] + 50
        assert {"up_ms", "http_ms", "server_ms", "infer_ms", "down_ms", "queue_ms"} <= set(t)


def test_a_probe_predicted_not_to_fit_is_sent_but_its_frame_is_not_held(frames):
    from edgepose.offload import LinkSpec
    from edgepose.offload.runtime import CloudEdgeRuntime, RuntimeOptions
    from edgepose import EstimatorOptions, PoseEstimator

    client = ScriptedClient()
    est = PoseEstimator("movenet-lightning-int8", options=EstimatorOptions(running_mode="video"), num_threads=1)
    slow = LinkSpec("slow", uplink_mbps=1.0, downlink_mbps=1.0, rtt_ms=500.0)  # nothing can fit 200 ms
    rt = CloudEdgeRuntime(est, client=client, link=slow, options=RuntimeOptions(
        budget_ms=250.0, result_delay_ms=200.0, policy=ALWAYS, keyframes=KeyframeConfig(k_max=1)))
    with rt:
        outs = [rt.push(f.image, f.timestamp_ms) for f in frames[:4]]
        rt.flush()
    assert client.sent, "unfit requests are still probed"
    assert all(len(o) == 1 for o in outs)  # each frame came straight out of its own push
    assert rt.control.counts["unfit"] >= 1
