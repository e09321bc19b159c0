"""Neurosurgeon split planning and head/tail export on the real MoveNet Lightning ONNX graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")

from edgepose.offload import LinkSpec, get_link  # noqa: E402
from edgepose.offload.split import (  # noqa: E402
    FLOAT_TOLERANCE,
    INT8_SCORE_TOLERANCE,
    INT8_XY_TOLERANCE,
    candidate_cuts,
    compare_split,
    export_split,
    keypoint_split_error,
    plan_split,
    profile_layers,
)

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def lightning(assets):
    return str(assets / "models" / "movenet" / "movenet_lightning_fp32.onnx")


@pytest.fixture(scope="module")
def cuts(lightning):
    return {c.index: c for c in candidate_cuts(lightning)}


@pytest.fixture(scope="module")
def feeds(pose_jpg):
    from edgepose.models._crop import Roi, crop

    out = []
    for box in [(300, 100, 700, 667), (0, 0, 1000, 667), (350, 50, 650, 600)]:
        patch, _ = crop(pose_jpg, Roi.from_box(*box), 192, 192)
        out.append({"input:0": patch[None].astype(np.int32)})
    return out


def test_candidate_cuts_span_all_cloud_to_all_edge(cuts):
    idx = sorted(cuts)
    assert idx[0] == -1 and idx[-1] == 209 and len(idx) > 100
    assert cuts[-1].tensors == ["input:0"] and cuts[-1].bytes == 192 * 192 * 3
    assert cuts[209].tensors == ["Identity:0"]
    assert cuts[15].bytes == 1 * 24 * 48 * 48 + 5  # 8-bit features + scale + zero point


def test_plan_reports_plainly_when_no_split_beats_the_ends(lightning):
    edge = np.full(210, 0.05)  # 10.5 ms in all, spread evenly
    plan = plan_split(lightning, get_link("lte"), edge_ms=edge, cloud_input_bytes=9000)
    assert not plan.is_split and plan.best is plan.all_edge
    assert plan.verdict.startswith("no split beats all-edge on lte: all-edge 10.5 ms, all-cloud ")
    fast = LinkSpec("lan", uplink_mbps=1000.0, downlink_mbps=1000.0, rtt_ms=0.5)
    plan = plan_split(lightning, fast, edge_ms=edge, edge_slowdown=10.0, server_speedup=10.0, cloud_input_bytes=9000)
    assert plan.best is plan.all_cloud and plan.verdict.startswith("no split beats all-cloud on lan")
    assert json.loads(json.dumps(plan.to_dict()))["is_split"] is False


def test_plan_picks_a_middle_cut_when_the_head_is_cheap_and_the_tail_dear(lightning, cuts):
    edge = np.full(210, 1.0)
    edge[:16] = 0.01  # a cheap stem before a 55 KB cut, expensive rest on a slow device
    slow_up = LinkSpec("slow", uplink_mbps=200.0, downlink_mbps=200.0, rtt_ms=1.0)
    plan = plan_split(lightning, slow_up, edge_ms=edge, server_speedup=100.0)  # all-cloud sends 110 KB raw
    assert plan.is_split and plan.best.cut.index in cuts
    assert plan.verdict.startswith(f"split after node {plan.best.cut.index}")


def test_measured_layer_profile_sums_to_the_measured_latency(lightning):
    prof = profile_layers(lightning, runs=3)
    assert len(prof.ms) == 210 and prof.ms.sum() == pytest.approx(prof.total_ms)
    assert (prof.ms >= 0).all() and prof.ms.max() > 0


@pytest.mark.parametrize("index", [15, 60])
def test_split_export_matches_the_unsplit_model_float_and_8bit(lightning, cuts, feeds, tmp_path, index):
    _, _, man = export_split(lightning, cuts[index], tmp_path / "f", quantize=False)
    for ref, got in compare_split(lightning, tmp_path / "f" / "head.onnx", tmp_path / "f" / "tail.onnx", feeds):
        assert np.abs(got["Identity:0"] - ref["Identity:0"]).max() <= FLOAT_TOLERANCE
    head, tail, man = export_split(lightning, cuts[index], tmp_path / "q")
    assert man["features"][0]["wire"] == ["feature0_q", "feature0_scale", "feature0_zero_point"]
    assert json.loads((tmp_path / "q" / "split.json").read_text())["cut_index"] == index
    for ref, got in compare_split(lightning, head, tail, feeds):
        xy, score = keypoint_split_error(ref["Identity:0"], got["Identity:0"])
        assert xy <= INT8_XY_TOLERANCE and score <= INT8_SCORE_TOLERANCE


def test_split_tail_is_served_and_the_head_runs_on_the_edge(lightning, cuts, feeds, tmp_path):
    import tritonclient.http as th

    from edgepose.backends.ort import OrtBackend
    from edgepose.server import OnnxServedModel, PoseServer

    head, tail, _ = export_split(lightning, cuts[15], tmp_path)
    served = OnnxServedModel(tail, name="tail", num_threads=1)
    s = PoseServer([served]).start()
    try:
        with OrtBackend(head, num_threads=1) as h, OrtBackend(lightning, num_threads=1) as full:
            mid = h.run(feeds[0])
            c = th.InferenceServerClient(s.url.removeprefix("http://"))
            inputs = []
            for name in ("feature0_q", "feature0_scale", "feature0_zero_point"):
                arr = mid[name]
                i = th.InferInput(name, list(arr.shape), {np.uint8: "UINT8", np.float32: "FP32"}[arr.dtype.type])
                i.set_data_from_numpy(arr)
                inputs.append(i)
            got = c.infer("tail", inputs).as_numpy("Identity:0")
            c.close()
            xy, _ = keypoint_split_error(full.run(feeds[0])["Identity:0"], got)
        assert xy <= INT8_XY_TOLERANCE
    finally:
        s.stop(close_models=True)


def test_export_split_cli_writes_plan_and_files(tmp_path, capsys):
    from edgepose.cli.main import main

    rc = main(["export", "split", "--model", "movenet-lightning-fp32", "--link", "lte", "--out", str(tmp_path),
               "--at", "15"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("no split beats all-edge on lte")
    assert {p.name for p in tmp_path.iterdir()} == {"head.onnx", "tail.onnx", "split.json", "plan.json"}
