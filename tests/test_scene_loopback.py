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


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.torch
def test_tiny_end_to_end(tmp_path):
    """Frames 0-149 collected, 150-169 evaluated, 2 fine-tuning steps: collect, adapt, one result per frame."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "scene_loopback.py"), "--train", "0:150", "--eval", "150:170",
           "--steps", "2", "--collect-rate", "0.5", "--server-model", "teacher", "--work", str(tmp_path / "work"), "--out", str(tmp_path),
           "--name", "tiny"]
    subprocess.run(cmd, check=True, timeout=900)
    rep = json.loads((tmp_path / "tiny.json").read_text())
    after, before = rep["after_run"], rep["before_run"]
    assert after["collected_crops"] >= 10 and after["adapt"]["seconds"] > 0
    assert [r["frames"] for r in rep["rows"]] == [20, 20]
    assert len(after["swaps"]) == (1 if after["adapt"]["accepted"] else 0) and not before["swaps"]
    if after["swaps"]:
        assert after["swaps"][0]["frame"] == 150 and "model swap 1" in after["stats_line"]
    assert (tmp_path / "tiny.md").read_text().count("| after:") == 1
