"""Video agreement: reading the tfjs reference tracks, comparing tracks, a tracked real run."""

import json

import numpy as np
import pytest

from edgepose.cli.main import main
from edgepose.errors import ConfigError
from edgepose.eval.video import (ReferenceTrack, compare_tracks, load_reference, run_tracked,
                                 temporal_comparison, track_array)
from edgepose.models import load_model
from edgepose.types import Keypoint as K


@pytest.fixture(scope="module")
def tfjs(assets):
    return assets / "data" / "tfjs_testdata"


def pose(offset=(0.0, 0.0)) -> np.ndarray:
    """A (17, 2) pose whose torso diagonals are 50 px (30-40-50)."""
    kps = np.tile([100.0, 100.0], (17, 1))
    kps[K.LEFT_SHOULDER] = [100, 100]
    kps[K.RIGHT_HIP] = [130, 140]
    kps[K.RIGHT_SHOULDER] = [130, 100]
    kps[K.LEFT_HIP] = [100, 140]
    return kps + offset


@pytest.mark.core
def test_pose_1_reference_is_120_frames_of_coco17_named_keypoints(tfjs):
    ref = load_reference(tfjs / "pose_1.json")
    raw = json.loads((tfjs / "pose_1.json").read_text())
    assert len(ref) == 120 and ref.source_format == "coco17"
    assert ref.keypoints[0][K.RIGHT_ANKLE].tolist() == [raw[0]["right_ankle"]["x"],
                                                        raw[0]["right_ankle"]["y"]]


@pytest.mark.core
def test_squats_reference_maps_blazepose_33_landmarks_to_coco17(tfjs):
    ref = load_reference(tfjs / "pose_squats.full.json")
    raw = json.loads((tfjs / "pose_squats.full.json").read_text())
    assert len(ref) == 65 and ref.source_format == "blazepose33"
    assert ref.keypoints[3][K.NOSE].tolist() == raw[3][0][:2]
    assert ref.keypoints[3][K.LEFT_HIP].tolist() == raw[3][23][:2]  # BlazePose 23 = left hip
    assert ref.keypoints[3][K.RIGHT_ANKLE].tolist() == raw[3][28][:2]


@pytest.mark.core
def test_a_missing_or_malformed_reference_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"reference file '.*nope.json' not found; pass --reference"):
        load_reference(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([[[1, 2]] * 5]))
    with pytest.raises(ConfigError, match=r"frame 0: cannot read a pose of shape \(5, 2\)"):
        load_reference(bad)


@pytest.mark.core
def test_identical_tracks_agree_perfectly():
    ref = [pose(), pose((5, 0))]
    out = compare_tracks([p.copy() for p in ref], ref)
    assert out["mean_px_error"] == 0.0 and out["pck_torso"] == 100.0 and out["frames"] == 2


@pytest.mark.core
def test_a_constant_offset_gives_that_mean_error_and_pck_against_the_reference_torso():
    ref = ReferenceTrack([pose(), pose()], "coco17")
    near = [pose((6.0, 8.0)), pose((6.0, 8.0))]  # 10 px == 0.2 x 50 torso: not below, a miss
    out = compare_tracks(near, ref)
    assert out["mean_px_error"] == pytest.approx(10.0)
    assert out["pck_torso"] == 0.0
    out = compare_tracks([pose((9.9, 0.0)), pose((9.9, 0.0))], ref)
    assert out["pck_torso"] == 100.0


@pytest.mark.core
def test_frames_without_a_prediction_count_as_misses_and_lengths_may_differ():
    ref = [pose(), pose(), pose(), None]
    out = compare_tracks([pose(), None, pose((1, 0))], ref)
    assert out["frames"] == 3 and out["missed_frames"] == 1
    assert out["pck_torso"] == pytest.approx(100 * 2 / 3, abs=1e-3)  # a missed frame fails all its joints
    assert out["mean_px_error"] == pytest.approx(0.5)  # errors only where both exist


@pytest.mark.core
def test_temporal_metrics_of_a_constant_offset_are_zero_jitter_and_the_offset():
    ref = [pose((2.0 * t, 0.0)) for t in range(20)]  # steady walk: zero acceleration
    out = temporal_comparison([p + (3.0, 4.0) for p in ref], ref, fps=30.0)
    assert out["accel_error"] == pytest.approx(0.0, abs=1e-9)
    assert out["position_error"] == pytest.approx(5.0)
    assert out["hf_energy_error"] == pytest.approx(0.0, abs=1e-9)
    assert out["fps"] == 30.0 and out["cutoff_hz"] == 5.0


@pytest.mark.core
def test_temporal_metrics_of_alternating_jitter_have_the_known_answers():
    # x jitters +a, -a, +a, ... around the reference: second differences are +-4a on every
    # joint, position error a; the error is a Nyquist sinusoid of amplitude a: power a^2.
    a = 1.5
    ref = [pose((2.0 * t, 0.0)) for t in range(20)]
    pred = [p + (a * (-1) ** t, 0.0) for t, p in enumerate(ref)]
    out = temporal_comparison(pred, ref, fps=30.0)
    assert out["accel_error"] == pytest.approx(4 * a)
    assert out["position_error"] == pytest.approx(a)
    assert out["hf_energy_error"] == pytest.approx(a * a / 2)  # x carries a^2, y 0: mean a^2/2
    assert out["pck"] == 100.0


@pytest.mark.core
def test_temporal_metrics_skip_missing_frames_and_match_the_shorter_track():
    ref = ReferenceTrack([pose((2.0 * t, 0.0)) for t in range(10)] + [None], "coco17")
    pred = [pose((2.0 * t, 0.0)) for t in range(12)]
    pred[4] = None  # the frames around it have no acceleration to compare
    out = temporal_comparison(pred, ref, fps=30.0)
    assert out["accel_error"] == pytest.approx(0.0, abs=1e-9)
    assert out["position_error"] == pytest.approx(0.0, abs=1e-9)
    arr = track_array(pred, 11)
    assert arr.shape == (11, 17, 2) and np.isnan(arr[4]).all() and np.isfinite(arr[5]).all()


@pytest.mark.backend
def test_tracked_lightning_agrees_with_the_tfjs_reference_on_pose_1(tfjs):
    ref = load_reference(tfjs / "pose_1.json")
    with load_model("movenet-lightning-int8", num_threads=2) as model:
        pred = run_tracked(model, tfjs / "pose_1.mp4", max_frames=40, progress=False)
    assert len(pred) == 40 and all(p is not None for p in pred)
    out = compare_tracks(pred, ref.keypoints[:40])
    assert out["pck_torso"] >= 90.0 and out["mean_px_error"] < 12.0, out


@pytest.mark.backend
def test_eval_video_command_prints_and_writes_the_comparison(tfjs, tmp_path, capsys):
    out = tmp_path / "video.json"
    rc = main(["eval-video", str(tfjs / "pose_1.mp4"), "--model", "movenet-lightning-int8",
               "--reference", str(tfjs / "pose_1.json"), "--max-frames", "10", "--json", str(out),
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "PCK@0.2 x torso:" in printed and "| accel err (px/frame^2) |" in printed
    d = json.loads(out.read_text())
    assert d["frames"] == 10 and d["model"] == "movenet-lightning-int8" and d["smoothing"] is True
    for key in ("accel_error", "position_error", "hf_energy", "hf_energy_error", "pck", "pck05"):
        assert isinstance(d[key], float), key
    assert d["fps"] == 30.0 and d["cutoff_hz"] == 5.0
    assert 0 < d["accel_error"] < 20 and 0 < d["position_error"] < 12


@pytest.mark.slow
@pytest.mark.backend
def test_tracked_thunder_agrees_with_pose_1_at_90_percent(tfjs):
    ref = load_reference(tfjs / "pose_1.json")
    with load_model("movenet-thunder-fp32", num_threads=2) as model:
        out = compare_tracks(run_tracked(model, tfjs / "pose_1.mp4", progress=False), ref)
    assert out["frames"] == 120 and out["pck_torso"] >= 90.0, out


@pytest.mark.slow
@pytest.mark.backend
def test_tracked_blazepose_full_agrees_with_the_squats_reference_within_12_px(tfjs):
    ref = load_reference(tfjs / "pose_squats.full.json")
    with load_model("blazepose-full", num_threads=2) as model:
        out = compare_tracks(run_tracked(model, tfjs / "pose_squats.mp4", progress=False), ref)
    assert out["frames"] == 65 and out["mean_px_error"] <= 12.0, out
