"""Learned fixed-lag smoother (a learned FIR on the causal One Euro output): the identity taps are
the triangular fixed-lag One Euro exactly, it never reads beyond its delay, the vectorised
replay equals the online filter, and bad arguments raise ValueError naming value and range."""

from __future__ import annotations

import numpy as np
import pytest

from tests._fixed_lag_tracks import noisy_track, run_online

from edgepose.video.tracks import fixed_lag_one_euro_track
from edgepose.compression.temporal.learned_fixed_lag import (FixedLagTaps, LearnedFixedLag, full_window_rows,
                                                              learned_fixed_lag_track)
from edgepose.video.one_euro import MAX_FIXED_LAG, FixedLagOneEuro, OneEuroConfig

pytestmark = pytest.mark.core

CFG = OneEuroConfig(min_cutoff=4.0, beta=0.0, d_cutoff=0.5)
TAPS = FixedLagTaps(CFG, 2, (0.13, 0.23, 0.33, 0.24, 0.10), (-0.03, -0.03, -0.01, 0.02, 0.02))


_noisy, _online = noisy_track, run_online


@pytest.mark.parametrize("delay", [1, 2, 3])
def test_identity_taps_are_the_triangular_fixed_lag_one_euro_exactly(delay):
    x, scales = _noisy(gaps=(10, 11, 30, 33, 35, 79))
    taps = FixedLagTaps.triangular(CFG, delay)
    assert sum(taps.raw) == 0.0
    want = _online(FixedLagOneEuro(CFG, delay, "triangular"), x, 30.0, scales)
    got = _online(LearnedFixedLag(taps), x, 30.0, scales)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(learned_fixed_lag_track(x, 30.0, taps, scales),
                                  fixed_lag_one_euro_track(x, 30.0, CFG, delay, scales, method="triangular"))


@pytest.mark.parametrize("delay", [1, 2, 4])
def test_online_never_reads_beyond_its_declared_delay(delay):
    x, scales = _noisy()
    w = np.linspace(1.0, 2.0, 2 * delay + 1)
    taps = FixedLagTaps(CFG, delay, tuple(w / w.sum() * 0.9), tuple(np.full(2 * delay + 1, 0.1 / (2 * delay + 1))))
    m = 50
    changed = x.copy()
    changed[m:] += 40.0
    a = _online(LearnedFixedLag(taps), x, 30.0, scales)
    b = _online(LearnedFixedLag(taps), changed, 30.0, scales)
    np.testing.assert_array_equal(a[:m - delay], b[:m - delay])
    assert not np.allclose(a[m - delay], b[m - delay])  # it does look `delay` frames ahead


def test_emits_each_frame_delay_frames_late_and_flushes_the_rest():
    x, scales = _noisy(n=10)
    f = LearnedFixedLag(TAPS)
    for i in range(10):
        got = f.push(x[i], 33.0 * i, scale=scales[i])
        assert [g.index for g in got] == ([] if i < 2 else [i - 2])
    assert [t.index for t in f.flush()] == [8, 9]
    assert f.flush() == []


def test_vectorised_replay_equals_the_online_filter_with_gaps():
    x, scales = _noisy(n=120, seed=3, gaps=(0, 5, 6, 40, 42, 44, 100))
    got = learned_fixed_lag_track(x, 25.0, TAPS, scales)
    want = _online(LearnedFixedLag(TAPS), x, 25.0, scales)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert np.isnan(got[[0, 5, 6, 40, 42, 44, 100]]).all()


def test_learned_taps_apply_on_full_windows_only():
    present = np.ones(12, bool)
    present[[5]] = False
    np.testing.assert_array_equal(full_window_rows(present, 2), [2, 8, 9])
    x, scales = _noisy(n=12, gaps=(5,))
    tri = fixed_lag_one_euro_track(x, 30.0, CFG, 2, scales, method="triangular")
    got = learned_fixed_lag_track(x, 30.0, TAPS, scales)
    other = [i for i in range(12) if i not in (2, 5, 8, 9)]
    np.testing.assert_array_equal(got[other], tri[other])  # the baseline near breaks and ends
    assert not np.allclose(got[[2, 8, 9]], tri[[2, 8, 9]])


def test_a_translated_track_is_translated():
    x, scales = _noisy()
    a = learned_fixed_lag_track(x, 30.0, TAPS, scales)
    b = learned_fixed_lag_track(x + 123.0, 30.0, TAPS, scales)
    np.testing.assert_allclose(b, a + 123.0, atol=1e-9)


def test_taps_round_trip_through_json(tmp_path):
    p = tmp_path / "taps.json"
    TAPS.save(p, note="x")
    assert FixedLagTaps.load(p) == TAPS


@pytest.mark.parametrize("delay", [0, -1, MAX_FIXED_LAG + 1, 2.0, True, "2"])
def test_bad_delay_raises_naming_value_and_range(delay):
    with pytest.raises(ValueError, match=rf"delay must be an int from 1 to {MAX_FIXED_LAG}.*{delay!r}"):
        FixedLagTaps(CFG, delay, (1.0,), (0.0,))


def test_bad_taps_raise_naming_value_and_expected_shape():
    with pytest.raises(ValueError, match=r"prior must be 5 finite numbers.*\(0\.5, 0\.5\)"):
        FixedLagTaps(CFG, 2, (0.5, 0.5), (0.0,) * 5)
    with pytest.raises(ValueError, match=r"raw must be 5 finite numbers.*nan"):
        FixedLagTaps(CFG, 2, (0.2,) * 5, (0.0, 0.0, float("nan"), 0.0, 0.0))
    with pytest.raises(ValueError, match=r"sum to 1.*1\.5"):
        FixedLagTaps(CFG, 2, (0.2,) * 5, (0.5, 0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"from 1 to .*got 0"):
        FixedLagTaps.triangular(CFG, 0)
    with pytest.raises(ValueError, match=r"needs FixedLagTaps, got dict"):
        LearnedFixedLag({"delay": 2})
    with pytest.raises(ValueError, match=r"kind 'other'.*'fixed_lag_fir'"):
        FixedLagTaps.from_dict({"kind": "other"})
    with pytest.raises(ValueError, match=r"scale must be > 0, got 0"):
        LearnedFixedLag(TAPS).push(np.zeros((17, 2)), 0.0, scale=0.0)


def test_training_starts_at_the_triangular_taps():
    pytest.importorskip("torch")
    from edgepose.compression.temporal.fixed_lag_fir import FirClip, FirConfig, prepare, train_fir

    with pytest.raises(ValueError, match=r"inputs must be one of .*'bad'"):
        FirConfig(inputs="bad")
    with pytest.raises(ValueError, match=r"accel_weight must be >= 0, got -1"):
        FirConfig(accel_weight=-1)

    class Clip:  # the fields of baselines.TuneClip that prepare() reads
        name, fps = "synthetic", 30.0
        edge, scales = _noisy(n=60, gaps=(20,))
        teacher = edge + 1.0

    clips = prepare([Clip()], CFG, 2)
    assert isinstance(clips[0], FirClip)
    taps, _ = train_fir(clips, CFG, 2, FirConfig("prior+raw", 1.0, steps=1, lr=0.0))
    ident = FixedLagTaps.triangular(CFG, 2)
    np.testing.assert_allclose(taps.prior, ident.prior, atol=1e-12)
    np.testing.assert_allclose(taps.raw, ident.raw, atol=1e-12)
