"""Frame-rate augmentation and the two-rate learned fixed-lag smoother (issue 7, round C): the
subsampling keeps the arrays aligned, the runtime picks the low-rate taps on a slow stream and
the high-rate taps on a fast one from the observed time steps, both sets triangular is the
triangular fixed-lag One Euro exactly, it never reads beyond its delay, and bad thresholds /
taps raise ValueError naming the value and the valid range. numpy only."""

from __future__ import annotations

import numpy as np
import pytest

from tests._fixed_lag_tracks import noisy_track, run_online

from edgepose.compression.temporal.baselines import TuneClip
from edgepose.compression.temporal.fixed_lag_fir import augment_strides, subsample_clip
from edgepose.compression.temporal.learned_fixed_lag import (MAX_THRESHOLD_FPS, MIN_THRESHOLD_FPS, FixedLagTaps,
                                                              LearnedFixedLag, RateSwitchedFixedLag, RateSwitchedTaps,
                                                              learned_fixed_lag_track)
from edgepose.video.one_euro import FixedLagOneEuro, OneEuroConfig

pytestmark = pytest.mark.core

CFG = OneEuroConfig(min_cutoff=4.0, beta=0.0, d_cutoff=0.5)
HIGH = FixedLagTaps(CFG, 2, (0.13, 0.23, 0.33, 0.24, 0.10), (-0.03, -0.03, -0.01, 0.02, 0.02))
LOW = FixedLagTaps(CFG, 2, (0.05, 0.10, 0.30, 0.10, 0.05), (0.0, 0.05, 0.25, 0.05, 0.05))
RATE = RateSwitchedTaps(HIGH, LOW, 12.0)


_noisy, _online = noisy_track, run_online


def _clip(n=13):
    i = np.arange(n, dtype=float)
    edge = np.broadcast_to(i[:, None, None], (n, 17, 2)).copy()
    return TuneClip("c", edge, np.broadcast_to(i[:, None] / 100, (n, 17)).copy(), edge + 1000.0, 30.0, 500.0 + i)


def test_subsampling_keeps_the_arrays_aligned():
    c = _clip()
    s = subsample_clip(c, 3, 1)
    assert s.name == "c@s3o1" and s.fps == 10.0
    np.testing.assert_array_equal(s.edge[:, 0, 0], [1, 4, 7, 10])
    np.testing.assert_array_equal(s.scores[:, 0], [0.01, 0.04, 0.07, 0.10])
    np.testing.assert_array_equal(s.teacher[:, 5, 1], [1001, 1004, 1007, 1010])
    np.testing.assert_array_equal(s.scales, [501, 504, 507, 510])
    assert subsample_clip(c, 1) is c
    aug = augment_strides([c], (1, 2, 6))
    assert [a.name for a in aug] == ["c", "c@s2o0", "c@s2o1"] + [f"c@s6o{o}" for o in range(6)]
    assert sum(len(a.edge) for a in aug if "@s6" in a.name) == len(c.edge)  # every phase: every frame once
    assert [a.name for a in augment_strides([c], (2, 6), all_offsets=False)] == ["c@s2o0", "c@s6o0"]
    with pytest.raises(ValueError, match=r"stride must be an int >= 1, got 0"):
        subsample_clip(c, 0)
    with pytest.raises(ValueError, match=r"offset must be an int from 0 to stride - 1 = 2, got 3"):
        subsample_clip(c, 3, 3)


@pytest.mark.parametrize("fps,want", [(5.0, "low"), (30.0, "high"), (11.9, "low"), (12.5, "high")])
def test_picks_the_taps_by_the_observed_frame_rate(fps, want):
    x, scales = _noisy(n=60)
    f = RateSwitchedFixedLag(RATE)
    got = _online(f, x, fps, scales)
    assert abs(f.observed_fps - fps) < 1e-6
    assert f.taps is (LOW if want == "low" else HIGH)
    np.testing.assert_allclose(got, learned_fixed_lag_track(x, fps, LOW if want == "low" else HIGH, scales),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(got, _online(LearnedFixedLag(RATE.for_fps(fps)), x, fps, scales), rtol=0, atol=1e-9)


def test_frame_rate_is_the_median_of_recent_steps_with_pose_losses_counted():
    f = RateSwitchedFixedLag(RATE)
    assert f.observed_fps is None
    t = 0.0
    for i in range(20):  # 5 fps with one 30 fps jitter step and a frame without a pose
        t += 33.3 if i == 7 else 200.0
        f.push(None if i == 10 else np.zeros((17, 2)), t, scale=100.0)
    assert f.observed_fps == pytest.approx(5.0) and f.taps is LOW


@pytest.mark.parametrize("fps", [5.0, 30.0])
def test_both_sets_triangular_is_the_triangular_fixed_lag_one_euro_exactly(fps):
    x, scales = _noisy(gaps=(10, 11, 30, 33, 35, 79))
    tri = FixedLagTaps.triangular(CFG, 2)
    got = _online(RateSwitchedFixedLag(RateSwitchedTaps(tri, tri, 12.0)), x, fps, scales)
    want = _online(FixedLagOneEuro(CFG, 2, "triangular"), x, fps, scales)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fps", [5.0, 30.0])
def test_never_reads_beyond_its_delay(fps):
    x, scales = _noisy()
    m = 50
    changed = x.copy()
    changed[m:] += 40.0
    a = _online(RateSwitchedFixedLag(RATE), x, fps, scales)
    b = _online(RateSwitchedFixedLag(RATE), changed, fps, scales)
    np.testing.assert_array_equal(a[:m - 2], b[:m - 2])
    assert not np.allclose(a[m - 2], b[m - 2])


def test_rate_taps_round_trip_through_the_extended_json(tmp_path):
    p = tmp_path / "taps.json"
    RATE.save(p, note="x")
    assert RateSwitchedTaps.load(p) == RATE
    assert FixedLagTaps.load(p) == HIGH  # the plain reader sees the high-rate taps


@pytest.mark.parametrize("t", [0.5, 0.0, -3.0, MAX_THRESHOLD_FPS + 1, float("nan"), float("inf"), True, "12"])
def test_bad_threshold_raises_naming_value_and_range(t):
    with pytest.raises(ValueError, match=rf"threshold_fps must be a number from {MIN_THRESHOLD_FPS:g} to "
                                         rf"{MAX_THRESHOLD_FPS:g} \(fps\), got {t!r}"):
        RateSwitchedTaps(HIGH, LOW, t)


def test_bad_taps_raise():
    with pytest.raises(ValueError, match=r"RateSwitchedTaps.low must be FixedLagTaps, got dict"):
        RateSwitchedTaps(HIGH, {"prior": [1.0]}, 12.0)
    with pytest.raises(ValueError, match=r"share delay and One Euro config, got delay 2 / 1"):
        RateSwitchedTaps(HIGH, FixedLagTaps.triangular(CFG, 1), 12.0)
    with pytest.raises(ValueError, match=r"share delay .*min_cutoff=1.0"):
        RateSwitchedTaps(HIGH, FixedLagTaps.triangular(OneEuroConfig(1.0, 0.0, 0.5), 2), 12.0)
    with pytest.raises(ValueError, match=r"needs RateSwitchedTaps, got FixedLagTaps"):
        RateSwitchedFixedLag(HIGH)
    with pytest.raises(ValueError, match=r"needs 'threshold_fps' and 'low_rate'"):
        RateSwitchedTaps.from_dict(HIGH.to_dict())
    with pytest.raises(ValueError, match=r"prior must be 5 finite numbers.*\(0\.5, 0\.5\)"):
        RateSwitchedTaps.from_dict({**HIGH.to_dict(), "threshold_fps": 12.0,
                                    "low_rate": {"prior": [0.5, 0.5], "raw": [0.0] * 5}})
