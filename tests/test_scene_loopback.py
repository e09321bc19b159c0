"""benchmarks/scene_loopback.py (issue 21 part 4): the plumbing (frame ranges, per-segment figures, the
stats line, the target verdict) in the default run; a tiny end-to-end run (serve --collect, adapt,
swap) with ``-m slow``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def sl(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # how a script run finds _common / _offload
    import scene_loopback

    return scene_loopback


def _result(i: int, *, latency: float, met: bool, source: str = "edge", kps=None):
    pose = None if kps is None else SimpleNamespace(keypoints=kps)
    return SimpleNamespace(frame_index=i, timings_ms={"latency": latency}, deadline_met=met, pose=pose,
                           poses=[] if pose is None else [pose], source=SimpleNamespace(value=source))


@pytest.mark.core
def test_ranges_never_reach_the_evaluation_frames(sl):
    assert sl.frame_range("0:600") == (0, 600)
    sl.check_ranges((0, 600), (600, 795))
    with pytest.raises(SystemExit, match="evaluation frames"):
        sl.check_ranges((0, 650), (650, 795))
    with pytest.raises(SystemExit, match="must start where"):
        sl.check_ranges((0, 500), (600, 795))
    import argparse

    for bad in ("600", "5:2", "a:b"):
        with pytest.raises(argparse.ArgumentTypeError):
            sl.frame_range(bad)


@pytest.mark.core
def test_segment_figures_stats_line_and_verdict(sl):
    kp = np.tile(np.arange(17, dtype=np.float32)[:, None] * 10, (1, 3))
    res = [_result(i, latency=10.0 + i, met=i != 7, source="cloud" if i == 6 else "edge", kps=kp) for i in range(10)]
    trace = [{"frame": 2}, {"frame": 6}, {"frame": 7}]
    refs = {"stream": [kp] * 5, "vtest_eval": [kp + 1000.0] * 5}
    row = sl.segment_row(res, trace, 105, 110, refs, offset=100)  # frames 5-9 of a stream starting at video frame 100
    assert row["frames"] == 5 and row["offloaded"] == 2 and row["offload_share"] == 0.4
    assert row["cloud_share"] == 0.2 and row["within_budget"] == 0.8
    assert row["p50_ms"] == 17.0 and row["pck_stream"] == 100.0 and row["pck_vtest_eval"] == 0.0
    with pytest.raises(AssertionError, match="one result per input frame"):
        sl.segment_row(res[:3] + res[4:], trace, 100, 110, {}, offset=100)
    line = sl.stats_line(res[5:], {5}, 100.0, {6, 7})
    assert "model swap 1" in line and "offload 40%" in line and "1 missed of 5" in line
    assert "model swap" not in sl.stats_line(res[5:], set(), 100.0, set())
    ok = {"pct_of_teacher_vtest_eval": 97.5, "offload_share": 0.1, "within_budget": 0.995}
    assert sl.verdict(ok) == (True, [])
    assert sl.verdict(dict(ok, pct_of_teacher_vtest_eval=90.0, within_budget=0.9)) == (False, ["PCK", "budget"])


@pytest.mark.core
def test_the_report_says_which_collection_fed_the_server(sl, tmp_path):
    assert sl.collection_label(None, None) == "the deployed policy's offloads only"
    assert "collect_interval_ms=250" in sl.collection_label(None, 250.0)
    both = sl.collection_label(0.5, 250.0)
    assert "collect_interval_ms=250" in both and "--collect-rate 0.5" in both
    (tmp_path / "0000000000.json").write_text(json.dumps({"seq": 0, "model": "m"}))  # before samples existed
    (tmp_path / "0000000001.json").write_text(json.dumps({"seq": 1, "model": "m", "source": "sample"}))
    (tmp_path / "0000000002.json").write_text(json.dumps({"seq": 2, "model": "m", "source": "offload"}))
    assert sl.crop_counts(tmp_path) == {"offload": 2, "sample": 1}
    cs = {"sent": 9, "answered": 8, "failed": 1, "skipped_busy": 3, "in_flight": 0, "offloads_refused": 2}
    rep = {"collect_interval_ms": 250.0, "after_run": {"collected_by_source": {"offload": 2, "sample": 8},
                                                      "collection_samples_at_snapshot": cs, "collection_samples": cs},
           "before_run": {"collection_samples": dict(cs, sent=0)}}
    lines = sl.collection_lines(rep)
    assert lines[0] == "- collected crops by source: 2 offloads, 8 collection samples"
    assert "sent 9, answered 8, failed 1, skipped busy 3, offloads refused 2" in lines[1]
    assert len(sl.collection_lines(dict(rep, collect_interval_ms=None))) == 1  # no sample counts without samples


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.torch
def test_tiny_end_to_end(tmp_path):
    """Frames 0-149 collected (offloads + collection samples, the product path), 150-169 evaluated, 2
    fine-tuning steps: collect, adapt, one result per frame. (``--collect-rate 0.5`` runs the same way.)"""
    cmd = [sys.executable, str(REPO / "benchmarks" / "scene_loopback.py"), "--train", "0:150", "--eval", "150:170",
           "--steps", "2", "--collect-interval-ms", "200", "--server-model", "teacher", "--work", str(tmp_path / "work"),
           "--out", str(tmp_path), "--name", "tiny", "--cold-repeat", "1"]
    subprocess.run(cmd, check=True, timeout=900)
    rep = json.loads((tmp_path / "tiny.json").read_text())
    after, before = rep["after_run"], rep["before_run"]
    assert after["collected_crops"] >= 10 and after["adapt"]["seconds"] > 0
    by, snap = after["collected_by_source"], after["collection_samples_at_snapshot"]
    assert by["offload"] + by["sample"] == after["collected_crops"]
    assert rep["collect_interval_ms"] == 200.0 and "collect_interval_ms=200" in rep["collection"]
    # every answered sample is in the collection (one in flight at the snapshot may be too)
    assert snap["answered"] <= by["sample"] <= snap["answered"] + snap["in_flight"] and by["sample"] >= 10
    c = after["collection_samples"]
    assert c["sent"] == c["answered"] + c["failed"] and c["in_flight"] == 0
    assert "collection samples (`summary()" in (tmp_path / "tiny.md").read_text()
    assert [r["frames"] for r in rep["rows"]] == [20, 20]
    assert len(after["swaps"]) == (1 if after["adapt"]["accepted"] else 0) and not before["swaps"]
    if after["swaps"]:
        assert after["swaps"][0]["frame"] == 150 and "model swap 1" in after["stats_line"]
    assert (tmp_path / "tiny.md").read_text().count("| after:") == 1
    # the vtest_eval protocol: a cold start per model, one result per evaluation frame
    models = ["generic"] + (["specialised"] if after["adapt"]["accepted"] else [])
    assert [r["model"] for r in rep["cold_rows"]] == models and all(r["frames"] == 20 for r in rep["cold_rows"])
    assert set(rep["cold"]) == set(models) and "cold at frame 150" in (tmp_path / "tiny.md").read_text()
