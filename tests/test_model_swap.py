"""The swap test of issue 21: a stream with a model swap in the middle yields exactly one result per
input frame, in order, and the stats line reports the swap."""

from __future__ import annotations

import pytest

from edgepose.offload.runtime import CloudEdgeRuntime
from edgepose.video.livestats import LiveStats

EDGE = "movenet-lightning-int8-onnx"


def _frames(assets, n):
    from edgepose.video.sources import VideoFileSource

    out = []
    with VideoFileSource(str(assets / "data" / "tfjs_testdata" / "pose_1.mp4")) as src:
        for f in src:
            out.append((f.image, f.timestamp_ms))
            if len(out) == n:
                break
    return out


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.mark.parametrize("server", [None, "embedded"])
def test_swap_mid_stream_keeps_one_result_per_frame_in_order(assets, server, caplog):
    frames = _frames(assets, 24)
    new_model = str(assets / "models" / "movenet" / "movenet_lightning_fp32.onnx")
    clock = _Clock()
    stats = LiveStats(budget_ms=1000.0, window_s=1.0, clock=clock)
    results, lines = [], []
    kw = dict(teacher="movenet-lightning-fp32", link="wifi") if server else {}
    with caplog.at_level("INFO", logger="edgepose.offload.swap"), \
            CloudEdgeRuntime.create(EDGE, server=server, num_threads=1, **kw) as rt:
        swaps_seen, original = 0, rt.estimator.model
        for i, (img, ts) in enumerate(frames):
            if i == 12:
                rt.request_swap(new_model, num_threads=1, label="scene-specialised")
            out = rt.push(img, ts)
            swapped = len(rt.swaps) > swaps_seen
            swaps_seen = len(rt.swaps)
            stats.add(5.0, deadline_met=True, swapped=swapped)
            clock.t += 0.1
            if stats.due():
                lines.append(stats.line())
            results += out
        results += rt.flush()
        summary = rt.summary()
        assert rt.estimator.model is not original
    assert [r.frame_index for r in results] == list(range(len(frames)))  # none lost, duplicated, reordered
    assert [r.timestamp_ms for r in results] == [ts for _, ts in frames]
    assert [(s["frame"], s["to"]) for s in summary["swaps"]] == [(12, "scene-specialised")]
    assert summary["swaps"][0]["from"] != "scene-specialised"
    assert sum("model swap 1" in ln for ln in lines) == 1  # the second with the swap says so
    assert "model swap before frame 12" in caplog.text
    assert sum(r.pose is not None for r in results[12:]) >= 6  # the new model estimates


def test_a_swap_to_another_kind_of_model_is_refused(assets):
    from edgepose.errors import ConfigError

    with CloudEdgeRuntime.create(EDGE, server=None, num_threads=1) as rt:
        with pytest.raises(ConfigError, match="same kind"):
            rt.request_swap("blazepose-full", num_threads=1)
        assert rt.swaps == []
