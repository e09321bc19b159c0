"""Peers (issue 23): the pipe protocol with a real child process, the missing-environment error,
image-mode scoring, a suite's ``peers:`` entries (the numpy worker as a test-only peer), and
(slow) the real MediaPipe peer, alone and in a suite."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepose.bench import peers
from edgepose.bench.peers import PeerEnvMissingError, PeerError, open_peer
from edgepose.bench.peers._wire import WireError, recv, send
from edgepose.bench.peers.client import PeerProcess
from edgepose.errors import EdgePoseError

PKG = Path(peers.__file__).resolve().parent
NUMPY_WORKER = str(PKG / "_numpy_worker.py")


def _numpy_peer(*args) -> PeerProcess:
    """The numpy-only worker in a real child process (this interpreter), over a real pipe."""
    return PeerProcess(sys.executable, NUMPY_WORKER, args, name="numpy-centroid", start_timeout=60, call_timeout=60)


def _square(h=120, w=160, box=(40, 30, 60, 50)) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    return img


@pytest.mark.core
def test_wire_round_trip_in_memory():
    buf = io.BytesIO()
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    send(buf, {"op": "frame", "ts_ms": 5}, a)
    send(buf, {"op": "close"})
    buf.seek(0)
    h, arr = recv(buf)
    assert h["op"] == "frame" and h["ts_ms"] == 5 and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, a)
    assert arr.flags.writeable  # a frame handed to a peer's runtime may need to be writable
    assert recv(buf) == ({"op": "close"}, None)
    with pytest.raises(WireError):
        recv(buf)  # the pipe closed


@pytest.mark.core
def test_real_worker_process_answers_frames_over_the_pipe():
    with _numpy_peer("--joints", "17") as p:
        assert p.info["peer"] == "numpy-centroid" and p.info["pid"] != os.getpid()
        img = _square()
        r = p.frame(img, ts_ms=0)
        assert r.poses.shape == (1, 17, 3)
        np.testing.assert_allclose(r.poses[0, :, :2], np.tile([49.5, 39.5], (17, 1)))
        assert r.extra["checksum"] == int(img.sum(dtype=np.uint64))  # the frame arrived intact
        assert r.ms >= 0 and r.cpu_ms >= 0 and r.roundtrip_ms >= r.ms
        assert p.frame(np.zeros((8, 8, 3), np.uint8), ts_ms=33).poses.shape == (0, 17, 3)  # nobody
        assert p.frame(img, ts_ms=66).extra["frames_since_reset"] == 3
        p.reset()
        assert p.frame(img, ts_ms=0, mode="image").extra["frames_since_reset"] == 1
        proc = p.proc
    assert proc.returncode == 0  # close asked it to exit


@pytest.mark.core
def test_a_large_frame_crosses_the_pipe_intact():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(1002, 1000, 3), dtype=np.uint8)  # body3d_demo's size, 3 MB
    with _numpy_peer() as p:
        for ts in (0, 20):
            assert p.frame(img, ts_ms=ts).extra["checksum"] == int(img.sum(dtype=np.uint64))


@pytest.mark.core
def test_worker_that_fails_to_load_is_a_peer_error():
    with pytest.raises(PeerError, match="failed to load: RuntimeError: model file missing"):
        _numpy_peer("--fail-init")


@pytest.mark.core
def test_worker_that_dies_is_a_peer_error_with_its_exit_code():
    p = _numpy_peer()
    with pytest.raises(PeerError, match="exited with code 3"):
        p.frame(_square(), exit=3)
    with pytest.raises(PeerError, match="closed"):
        p.frame(_square())
    p.close()


@pytest.mark.core
def test_missing_peer_environment_names_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv(peers.PEER_DIR_ENV, str(tmp_path / "peers"))
    with pytest.raises(PeerEnvMissingError) as e:
        open_peer("mediapipe-pose-full")
    assert isinstance(e.value, EdgePoseError)
    msg = str(e.value)
    assert "python -m edgepose.bench.peers setup mediapipe" in msg
    assert str(tmp_path / "peers" / "mediapipe") in msg and "mediapipe==0.10.21" in msg
    # an interrupted setup (virtualenv there, no marker) is missing too
    (tmp_path / "peers" / "mediapipe" / "bin").mkdir(parents=True)
    (tmp_path / "peers" / "mediapipe" / "bin" / "python").write_text("")
    with pytest.raises(PeerEnvMissingError, match="setup did not finish"):
        peers.env_python("mediapipe")


@pytest.mark.core
def test_module_entry_point_reports_the_missing_environment_in_one_line(tmp_path):
    env = {**os.environ, peers.PEER_DIR_ENV: str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "edgepose.bench.peers", "check", "mediapipe-pose-full"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert "python -m edgepose.bench.peers setup mediapipe" in out.stderr
    lst = subprocess.run([sys.executable, "-m", "edgepose.bench.peers", "list"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert lst.returncode == 0 and "missing: python -m edgepose.bench.peers setup mediapipe" in lst.stdout


@pytest.mark.core
@pytest.mark.parametrize("worker", ["_wire.py", "_mediapipe_worker.py", "_numpy_worker.py"])
def test_peer_side_code_imports_only_numpy_mediapipe_and_the_stdlib(worker):
    tree = ast.parse((PKG / worker).read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    third_party = mods - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= {"numpy", "mediapipe", "_wire"}, third_party


class _Fake:
    """An in-process pipeline for the image-mode scoring: returns given poses per image."""

    kind = "edgepose"

    def __init__(self, name, answer):
        self.name, self._answer = name, answer

    def __call__(self, image, ts_ms, mode):
        from edgepose.bench.peers.compare import Answer

        poses = self._answer(image)
        return Answer(poses, [np.ones(17) for _ in poses], 1.0, 1.0)

    def reset(self):
        pass


@pytest.mark.core
def test_image_mode_scores_a_missed_person_zero(tmp_path):
    import cv2

    from edgepose.bench.peers.compare import run_images
    from edgepose.eval.datasets import Person
    from edgepose.models._crop import Roi

    path = tmp_path / "two.png"
    cv2.imwrite(str(path), np.zeros((200, 300, 3), np.uint8))
    rng = np.random.default_rng(1)

    def person(x0, i):
        kp = np.column_stack([rng.uniform(x0, x0 + 80, 17), rng.uniform(20, 180, 17), np.full(17, 2.0)])
        return Person("coco_mini_val2017", path, kp, (x0, 20.0, x0 + 80.0, 180.0), Roi(x0 + 40, 100, 200, 200), 12800.0, i)

    a, b = person(10.0, 1), person(200.0, 2)
    pipes = [_Fake("both", lambda im: [b.keypoints[:, :2] + 1, a.keypoints[:, :2]]),
             _Fake("one", lambda im: [b.keypoints[:, :2]]),
             _Fake("none", lambda im: [])]
    out = run_images(pipes, [a, b])["pipelines"]
    assert out["both"]["pck_torso"] == 100.0 and out["both"]["people_found"] == 2  # matched by position
    assert out["one"]["pck_torso"] == 50.0 and out["one"]["people_found"] == 1
    assert out["none"]["pck_torso"] == 0.0 and out["none"]["people_found"] == 0


@pytest.mark.slow
def test_real_mediapipe_peer(pose_jpg):
    """Needs the peer environment (python -m edgepose.bench.peers setup mediapipe)."""
    from edgepose.models import get_card

    try:
        p = open_peer("mediapipe-pose-full", threads=1)
    except PeerEnvMissingError as e:
        pytest.skip(str(e))
    with p:
        assert p.info["mediapipe"] == "0.10.21" and len(p.info["xnnpack_nodes"]) == 2
        assert p.info["models"]["pose_landmark_full.tflite"] in get_card("blazepose-full").sha256
        r = p.frame(pose_jpg, mode="image")
        assert r.poses.shape == (1, 33, 4)
        h, w = pose_jpg.shape[:2]
        assert 0 < r.poses[0, 0, 0] < w and 0 < r.poses[0, 0, 1] < h  # the nose, in frame px
        for i in range(3):
            v = p.frame(pose_jpg, ts_ms=i * 33)
            assert v.poses.shape == (1, 33, 4) and v.cpu_ms > 0
        np.testing.assert_allclose(v.poses[0, :, :2], r.poses[0, :, :2], atol=0.05 * max(h, w))
        p.reset()
        assert p.frame(pose_jpg, ts_ms=0).poses.shape == (1, 33, 4)


# -- peers in a suite (``peers:`` entries run by ``edgepose bench``) -------------------------------

TEST_ENV = peers.PeerEnv("numpy-test", (), ("numpy",), ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13)))
TEST_PEER = peers.PeerSpec("numpy-centroid", TEST_ENV, "_numpy_worker.py", ("--joints", "17"), "coco17",
                           "numpy-only test worker: every joint at the centroid of the bright pixels")
PEER_SUITE = """
name: peers-test
peers:
  - peer: {peer}
    against: [movenet-lightning-int8-onnx]
    clips: [data/tfjs_testdata/pose_1.mp4]
    frames: 6
    threads: 1
"""


@pytest.fixture
def numpy_peer_env(tmp_path, monkeypatch):
    """The numpy worker registered as a peer for this test only, its 'virtualenv' a wrapper of this
    interpreter under a temporary $EDGEPOSE_PEER_DIR (the user-facing registry is restored after)."""
    monkeypatch.setitem(peers.ENVS, TEST_ENV.name, TEST_ENV)
    monkeypatch.setitem(peers.PEERS, TEST_PEER.name, TEST_PEER)
    root = tmp_path / "peer-envs"
    monkeypatch.setenv(peers.PEER_DIR_ENV, str(root))
    bin_dir = root / TEST_ENV.name / "bin"
    bin_dir.mkdir(parents=True)
    py = bin_dir / "python"
    py.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    py.chmod(0o755)
    (root / TEST_ENV.name / peers.MARKER).write_text("{}")
    return root


def _peer_suite(tmp_path, peer="numpy-centroid", text=PEER_SUITE):
    from edgepose.bench.suite import load_suite

    p = tmp_path / "peers.yaml"
    p.write_text(text.format(peer=peer))
    return load_suite(p)


@pytest.mark.backend
def test_a_suite_runs_a_peer_interleaved_and_writes_the_peers_rows_and_table(numpy_peer_env, tmp_path, assets):
    from edgepose.bench.report import markdown, write_report
    from edgepose.bench.runner import BenchOptions, run_suite

    assert "numpy-centroid" not in peers.PEERS or peers.PEERS["numpy-centroid"] is TEST_PEER
    doc = run_suite(_peer_suite(tmp_path), BenchOptions(assets=str(assets), progress=False))
    assert doc["cases"] == [] and doc["video"] == [] and len(doc["peers"]) == 1
    e = doc["peers"][0]
    edge = "edgepose movenet-lightning-int8-onnx"
    assert e["id"] == "numpy-centroid" and e["baseline"] == "numpy-centroid" and e["threads"] == 1
    assert e["kind"] == "measured" and e["peer_info"]["peer"] == "numpy-centroid" and e["images"] is None
    assert list(e["pipelines"]) == ["numpy-centroid", edge]
    (clip,) = e["clips"]
    assert clip["clip"] == "pose_1.mp4" and clip["frames"] == 6
    assert clip["ratios"][edge]["vs"] == "numpy-centroid" and clip["ratios"][edge]["rounds"] == 6
    for n in e["pipelines"]:
        row = clip["pipelines"][n]
        assert row["latency_ms"]["p50"] > 0 and row["latency_ms"]["p95"] >= row["latency_ms"]["p50"]
        assert row["cpu_ms"]["mean"] >= 0 and row["frames_with_person"] == 6
        assert n in clip["jitter_common_frames"]
    assert e["pooled"][edge]["ratio"]["median"] > 0 and e["pooled"]["numpy-centroid"]["ratio"] is None
    md = markdown(doc)
    assert "## Peers (interleaved per frame" in md
    assert f"| numpy-centroid (t1) | pose_1.mp4 | {edge} | 6 |" in md
    assert "| numpy-centroid (t1) | all clips | numpy-centroid | 6 |" in md and "1 (peer)" in md
    paths = write_report(doc, tmp_path / "out")
    assert Path(paths["peers"]).stat().st_size > 0 and "## Peers" in Path(paths["markdown"]).read_text()
    assert json.loads(Path(paths["json"]).read_text())["peers"][0]["id"] == "numpy-centroid"
    # --no-video skips peers too (they are video cases), and needs no peer environment
    doc = run_suite(_peer_suite(tmp_path), BenchOptions(assets=str(assets), progress=False, video=False))
    assert doc["peers"] == []


@pytest.mark.backend
def test_peers_plot_is_latency_vs_pck_when_the_entry_ran_image_mode(tmp_path):
    from edgepose.bench.report import plot_peers

    pooled = {n: {"frames": 3, "latency_ms": {"p50": p, "p95": p * 2, "mean": p}, "cpu_ms": {"mean": p}}
              for n, p in (("peer", 10.0), ("edgepose m", 3.0))}
    e = {"id": "peer", "peer": "peer", "pooled": pooled, "images": None}
    doc = {"suite": {"name": "t"}, "peers": [e]}
    assert plot_peers(doc, tmp_path / "a.png") == "latency"
    e["images"] = {"pipelines": {"peer": {"pck_torso": 30.0}, "edgepose m": {"pck_torso": 35.0}}}
    assert plot_peers(doc, tmp_path / "b.png") == "pck" and (tmp_path / "b.png").stat().st_size > 0


@pytest.mark.core
def test_suite_peers_entries_are_validated_with_clear_messages(numpy_peer_env, tmp_path):
    from edgepose.bench.suite import load_suite
    from edgepose.errors import ConfigError

    with pytest.raises(ConfigError, match=r"peers\[0\]\.peer: unknown peer 'mediapipe-pose-fool'; valid choices: "
                                          r"mediapipe-pose-full, mediapipe-pose-lite"):
        _peer_suite(tmp_path, peer="mediapipe-pose-fool")
    bad = PEER_SUITE.replace("threads: 1", "thread: 1")
    with pytest.raises(ConfigError, match=r"unknown field 'peers\[0\]\.thread'. Valid fields of 'peers\[0\]': "
                                          r"peer, name, against, clips, frames, threads, accuracy"):
        _peer_suite(tmp_path, text=bad)
    with pytest.raises(ConfigError, match=r"peers\[0\]\.against has 'no-such-model'; use registered model names"):
        _peer_suite(tmp_path, text=PEER_SUITE.replace("[movenet-lightning-int8-onnx]", "[no-such-model]"))
    with pytest.raises(ConfigError, match=r"field 'peers\[0\]\.frames' must be int"):
        _peer_suite(tmp_path, text=PEER_SUITE.replace("frames: 6", "frames: many"))
    with pytest.raises(ConfigError, match=r"peers\[0\] has no 'clips'"):
        _peer_suite(tmp_path, text=PEER_SUITE.replace("clips: [data/tfjs_testdata/pose_1.mp4]", ""))
    # a suite case name in 'against' stands for its model; a scalar clip is a one-element list
    s = _peer_suite(tmp_path, text="cases:\n  - {{name: mn, model: movenet-lightning-int8-onnx}}\n" + PEER_SUITE.replace(
        "[movenet-lightning-int8-onnx]", "[mn]").replace("[data/tfjs_testdata/pose_1.mp4]", "data/x.mp4"))
    assert s.peers[0].against == ["movenet-lightning-int8-onnx"] and s.peers[0].clips == ["data/x.mp4"]
    assert s.peers[0].name == "numpy-centroid" and s.peers[0].accuracy is False
    assert load_suite(Path(__file__).resolve().parent.parent / "benchmarks" / "peers.yaml").peers


@pytest.mark.core
def test_a_missing_peer_environment_fails_the_suite_before_any_timing(tmp_path, monkeypatch, assets):
    from edgepose.bench import runner

    monkeypatch.setenv(peers.PEER_DIR_ENV, str(tmp_path / "none"))
    suite = _peer_suite(tmp_path, peer="mediapipe-pose-full")

    def no_timing(*a, **k):
        raise AssertionError("timing started before the peer environment was checked")

    monkeypatch.setattr(runner, "make_context", no_timing)
    with pytest.raises(PeerEnvMissingError, match="python -m edgepose.bench.peers setup mediapipe"):
        runner.run_suite(suite, runner.BenchOptions(assets=str(assets), progress=False))


@pytest.mark.core
def test_the_cli_reports_a_missing_peer_environment_in_one_line(tmp_path, assets, monkeypatch, capsys):
    from edgepose.cli.main import main

    suite = tmp_path / "peers.yaml"
    suite.write_text(PEER_SUITE.format(peer="mediapipe-pose-full"))
    monkeypatch.setenv(peers.PEER_DIR_ENV, str(tmp_path / "none"))
    assert main(["bench", str(suite), "--assets", str(assets), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgepose bench: error: the peer environment 'mediapipe' is missing")
    assert err.count("\n") == 1 and "python -m edgepose.bench.peers setup mediapipe" in err


@pytest.mark.slow
def test_real_mediapipe_peer_in_a_suite(assets, tmp_path):
    """Needs the peer environment (python -m edgepose.bench.peers setup mediapipe)."""
    from edgepose.bench.report import markdown
    from edgepose.bench.runner import BenchOptions, run_suite

    try:
        peers.env_python("mediapipe")
    except PeerEnvMissingError as e:
        pytest.skip(str(e))
    suite = _peer_suite(tmp_path, peer="mediapipe-pose-full", text=PEER_SUITE.replace(
        "[movenet-lightning-int8-onnx]", "[blazepose-full, movenet-lightning-int8-onnx]").replace("frames: 6", "frames: 20"))
    doc = run_suite(suite, BenchOptions(assets=str(assets), progress=False))
    (e,) = doc["peers"]
    assert e["peer_info"]["mediapipe"] == "0.10.21"
    clip = e["clips"][0]
    for n in ("mediapipe-pose-full", "edgepose blazepose-full", "edgepose movenet-lightning-int8-onnx"):
        assert clip["pipelines"][n]["frames_with_person"] == 20
    assert 0.2 < clip["ratios"]["edgepose blazepose-full"]["median"] < 5
    assert "| mediapipe-pose-full (t1) | all clips | mediapipe-pose-full | 20 |" in markdown(doc)
