"""Temporal metrics on synthetic trajectories whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from edgepose.eval.jitter import (acceleration, default_cutoff_hz, high_frequency_energy,
                                  mean_acceleration_error, mean_position_error, pck_track,
                                  temporal_metrics, torso_sizes)

pytestmark = pytest.mark.core


def line(t=30, j=3, v=(2.0, -1.0), x0=(10.0, 20.0)):
    """Constant-velocity track (T, J, 2)."""
    k = np.arange(t, dtype=float)[:, None, None]
    return np.asarray(x0)[None, None] + k * np.asarray(v)[None, None] + np.zeros((t, j, 2))


def test_constant_velocity_has_zero_acceleration():
    assert np.allclose(acceleration(line()), 0.0)
    assert mean_acceleration_error(line()) == pytest.approx(0.0)


def test_parabola_has_its_second_derivative_as_acceleration():
    t = np.arange(20, dtype=float)
    tr = np.zeros((20, 2, 2))
    tr[:, :, 1] = 0.5 * 3.0 * t[:, None] ** 2  # y = a t^2 / 2, a = 3 px / frame^2
    assert mean_acceleration_error(tr) == pytest.approx(3.0)


def test_alternating_noise_gives_four_times_its_amplitude_as_acceleration_error():
    ref = line()
    pred = ref.copy()
    pred[:, :, 0] += 0.5 * (-1.0) ** np.arange(len(ref))[:, None]  # +-0.5 px every other frame
    assert mean_acceleration_error(pred, ref) == pytest.approx(2.0)  # |0.5 + 2*0.5 + 0.5|
    assert mean_position_error(pred, ref) == pytest.approx(0.5)


def test_constant_offset_is_position_error_but_not_acceleration_error():
    ref = line()
    pred = ref + np.array([3.0, 4.0])
    assert mean_position_error(pred, ref) == pytest.approx(5.0)
    assert mean_acceleration_error(pred, ref) == pytest.approx(0.0)


def test_a_missing_frame_removes_the_three_accelerations_that_touch_it():
    ref = line(t=10, j=1)
    pred = ref.copy()
    pred[:, 0, 0] += np.array([0, 0, 0, 0, 1.0, 0, 0, 0, 0, 0])  # a 1 px spike at frame 4
    assert mean_acceleration_error(pred, ref) == pytest.approx((1 + 2 + 1) / 8)
    pred[4] = np.nan  # the spike frame is missing: every remaining acceleration is exact
    assert mean_acceleration_error(pred, ref) == pytest.approx(0.0)
    assert mean_position_error(pred, ref) == pytest.approx(0.0)


def test_sinusoid_above_the_cutoff_has_energy_a_squared_over_two():
    fps, n = 30.0, 300  # 10 s: whole periods of 1 Hz and 10 Hz
    t = np.arange(n) / fps
    slow = 20.0 * np.sin(2 * np.pi * 1.0 * t)
    fast = 3.0 * np.sin(2 * np.pi * 10.0 * t)
    tr = np.stack([slow + fast, slow], axis=1)[:, None, :]  # (T, 1, 2)
    # x carries 3^2/2 above 5 Hz, y nothing; the mean over the two coordinates is 2.25
    assert high_frequency_energy(tr, fps, 5.0) == pytest.approx(4.5 / 2, rel=1e-9)
    assert high_frequency_energy(tr[:, :, 1:], fps, 5.0) == pytest.approx(0.0, abs=1e-18)


def test_total_spectral_energy_is_the_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1, 1))
    assert high_frequency_energy(x, 10.0, 1e-9) == pytest.approx(x.var(), rel=1e-9)


def test_cutoff_must_be_below_nyquist():
    with pytest.raises(ValueError, match="cutoff_hz must be in"):
        high_frequency_energy(line(), 10.0, 5.0)
    assert default_cutoff_hz(30.0) == 5.0
    assert default_cutoff_hz(5.0) == pytest.approx(2.0)


def coco_ref(t=4, torso=100.0):
    """A COCO-17 reference whose two torso diagonals are both ``torso`` px."""
    ref = np.zeros((t, 17, 2))
    ref[:, 5] = [0, 0]      # left shoulder
    ref[:, 6] = [60, 0]     # right shoulder
    ref[:, 11] = [0, 80]    # left hip
    ref[:, 12] = [60, 80]   # right hip: |l_sho - r_hip| = |r_sho - l_hip| = 100
    return ref


def test_pck_counts_errors_below_alpha_times_torso():
    ref = coco_ref()
    assert torso_sizes(ref) == pytest.approx([100.0] * 4)
    pred = ref.copy()
    pred[:2, 0, 0] += 10.0  # nose off by 10 px in frames 0-1: hit at 0.2 (20 px)
    pred[2:, 0, 0] += 30.0  # off by 30 px in frames 2-3: miss
    hits = 13 * 4 - 2
    assert pck_track(pred, ref, 0.2) == pytest.approx(100.0 * hits / 52)
    assert pck_track(pred, ref, 0.05) == pytest.approx(100.0 * (13 * 4 - 4) / 52)


def test_a_missing_prediction_is_a_miss_and_a_missing_reference_is_not_scored():
    ref = coco_ref()
    pred = ref.copy()
    pred[0] = np.nan
    assert pck_track(pred, ref) == pytest.approx(75.0)
    ref[0] = np.nan
    assert pck_track(pred, ref) == pytest.approx(100.0)


def test_temporal_metrics_bundles_the_metrics_on_the_shared_joints():
    ref = coco_ref(t=40)
    pred = ref + 1.0  # 1 px in x and y on every joint
    m = temporal_metrics(pred, ref, fps=30.0)
    assert m.position_error == pytest.approx(np.sqrt(2))
    assert m.accel_error == pytest.approx(0.0)
    assert m.pck == pytest.approx(100.0)
    assert m.cutoff_hz == 5.0
    assert set(m.to_dict()) >= {"accel_error", "position_error", "hf_energy", "pck"}


def test_mismatched_shapes_are_rejected_with_both_shapes():
    with pytest.raises(ValueError, match=r"pred \(30, 3, 2\) and ref \(29, 3, 2\)"):
        mean_position_error(line(), line(t=29))


def test_reference_tracks_load_as_coco17_pixels(assets):
    from edgepose.eval.temporal import EVAL_CLIPS, reference_track

    pose_1 = reference_track(EVAL_CLIPS["pose_1"], assets=assets)
    squats = reference_track(EVAL_CLIPS["pose_squats"], assets=assets)
    assert pose_1.shape == (120, 17, 2) and squats.shape == (65, 17, 2)
    assert np.isfinite(pose_1).all() and np.isfinite(squats).all()  # BlazePose-33 covers COCO-17
    assert 0 < pose_1[..., 0].min() and pose_1[..., 0].max() < 576  # inside the 576x576 frame
    assert 0 < squats[..., 1].min() and squats[..., 1].max() < 1280  # inside the 720x1280 frame


def test_a_track_survives_an_npz_round_trip(tmp_path):
    from edgepose.eval.temporal import Track

    kps = np.arange(3 * 17 * 2, dtype=np.float32).reshape(3, 17, 2)
    kps[1] = np.nan
    tr = Track(kps, np.ones((3, 17), np.float32), 25.0, np.array([7, 8, 9]), np.array([1.0, np.nan, 2.0]),
               {"model": "m"})
    tr.save(tmp_path / "t.npz")
    back = Track.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.keypoints, kps)
    assert back.present.tolist() == [True, False, True]
    assert back.fps == 25.0 and back.meta == {"model": "m"} and back.frames.tolist() == [7, 8, 9]
