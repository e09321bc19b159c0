"""Fixed-lag One Euro (the One Euro baseline at the learned smoother's delay): d=0 is the plain
filter, it never reads beyond its delay, known answers on a constant and a ramp, flush, errors,
and the vectorised track replay used for tuning equals the online filter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests._fixed_lag_tracks import noisy_track, run_online

from edgepose.video.tracks import fixed_lag_one_euro_track, one_euro_track
from edgepose.video.one_euro import (FIXED_LAG_METHODS, MAX_FIXED_LAG, FixedLagOneEuro, OneEuroConfig,
                                     OneEuroFilter)

pytestmark = pytest.mark.core

CFG = OneEuroConfig(min_cutoff=1.5, beta=5.0, d_cutoff=1.0)


def _noisy(n=80, seed=0):
    return noisy_track(n, seed)


def _online(track, fps, cfg, delay, scales, method="forward-backward"):
    """Push a (N, 17, 2) track (nan rows = no pose) and flush; (N, 17, 2) in input order."""
    return run_online(FixedLagOneEuro(cfg, delay, method), track, fps, scales)


@pytest.mark.parametrize("method", FIXED_LAG_METHODS)
def test_delay_zero_is_the_plain_one_euro_filter_exactly(method):
    xs, scales = _noisy()
    f, plain = FixedLagOneEuro(CFG, 0, method), OneEuroFilter(CFG)
    for i, (x, s) in enumerate(zip(xs, scales)):
        got = f.push(x, 33.0 * i, scale=s)
        assert len(got) == 1 and got[0].index == i  # no look-ahead: emitted at once
        np.testing.assert_array_equal(got[0].value, plain(x, 33.0 * i, scale=s))
    assert f.flush() == []


@pytest.mark.parametrize("method", FIXED_LAG_METHODS)
@pytest.mark.parametrize("delay", [1, 2, 4])
def test_online_filter_never_reads_beyond_its_declared_delay(method, delay):
    xs, scales = _noisy()
    m = 50
    changed = xs.copy()
    changed[m:] += 40.0  # every frame from m on is different
    a = _online(xs, 30.0, CFG, delay, scales, method)
    b = _online(changed, 30.0, CFG, delay, scales, method)
    # frame m - delay - 1 was emitted when frame m - 1 arrived: before the change
    np.testing.assert_array_equal(a[:m - delay], b[:m - delay])
    assert not np.allclose(a[m - delay], b[m - delay])  # and it does look `delay` frames ahead


@pytest.mark.parametrize("method", FIXED_LAG_METHODS)
def test_emits_each_frame_once_delay_frames_late_and_flush_returns_the_last_delay(method):
    xs, scales = _noisy(n=10)
    f = FixedLagOneEuro(CFG, 3, method)
    emitted = []
    for i, x in enumerate(xs):
        got = f.push(x, 33.0 * i, scale=scales[i])
        assert [g.index for g in got] == ([] if i < 3 else [i - 3])
        emitted += got
    tail = f.flush()
    assert len(tail) == 3 and [t.index for t in tail] == [7, 8, 9]
    assert [t.timestamp_ms for t in tail] == [33.0 * 7, 33.0 * 8, 33.0 * 9]
    assert f.flush() == []
    short = FixedLagOneEuro(CFG, 4, method)
    assert short.push(xs[0], 0.0, scale=100.0) == [] and len(short.flush()) == 1  # fewer pushed


@pytest.mark.parametrize("method", FIXED_LAG_METHODS)
def test_a_constant_signal_returns_the_constant(method):
    still = np.full((17, 2), 321.5)
    f = FixedLagOneEuro(OneEuroConfig(min_cutoff=0.7, beta=20.0), 3, method)
    outs = []
    for i, s in enumerate([100, 250, 80, 400, 120, 90, 300]):  # the ROI side changes every frame
        outs += f.push(still, 40.0 * i, scale=s)
    outs += f.flush()
    assert len(outs) == 7
    for o in outs:
        np.testing.assert_allclose(o.value, still, rtol=0, atol=1e-9)


@pytest.mark.parametrize("delay", [1, 2, 4])
def test_a_ramp_lags_less_than_the_causal_filter_by_the_known_factor(delay):
    # beta = 0: a fixed cut-off, alpha = r / (1 + r), r = 2 pi fc dt. On x(t) = v t the causal
    # filter settles at a lag of v (1 - a) / a; the backward pass started at x(t) leads by
    # v ((1 - a) - (1 - a)^(d+1)) / a at t - d, so their mean lags by (1 - a)^(d+1) v / (2 a).
    fc, fps, v, n = 2.0, 30.0, 3.0, 200
    cfg = OneEuroConfig(min_cutoff=fc, beta=0.0)
    r = 2 * math.pi * fc / fps
    a = r / (1 + r)
    ramp = v * np.arange(n, dtype=float)[:, None, None] * np.ones((1, 17, 2))
    scales = np.full(n, 150.0)
    causal = one_euro_track(ramp, fps, cfg, scales)
    fb = _online(ramp, fps, cfg, delay, scales, "forward-backward")
    late = slice(150, n - delay)  # settled, and with the full look-ahead
    np.testing.assert_allclose(ramp[late] - causal[late], v * (1 - a) / a, rtol=1e-6)
    np.testing.assert_allclose(ramp[late] - fb[late], (1 - a) ** (delay + 1) * v / (2 * a), rtol=1e-6)
    assert (1 - a) ** (delay + 1) / 2 < (1 - a)  # smaller than the causal lag, for every d >= 0
    # the triangular average of the causal outputs is centred: it keeps the causal lag exactly
    tri = _online(ramp, fps, cfg, delay, scales, "triangular")
    np.testing.assert_allclose(ramp[late] - tri[late], v * (1 - a) / a, rtol=1e-6)


@pytest.mark.parametrize("method", FIXED_LAG_METHODS)
@pytest.mark.parametrize("delay", [0, 2, 5])
def test_track_replay_equals_the_online_filter_with_gaps(method, delay):
    xs, scales = _noisy(n=60, seed=3)
    xs[20] = np.nan  # pose lost: both restart, neither reads across the gap
    xs[41, 3] = np.nan  # one missing joint counts as no pose, as in one_euro_track
    xs[43] = np.nan
    on = _online(xs, 25.0, CFG, delay, scales, method)
    off = fixed_lag_one_euro_track(xs, 25.0, CFG, delay, scales, method=method)
    np.testing.assert_allclose(off, on, rtol=0, atol=1e-9)
    assert np.isnan(off[[20, 41, 43]]).all() and np.isfinite(off[[19, 21, 42]]).all()
    # the frame before a gap has no newer frame of its segment: it is the causal output
    np.testing.assert_allclose(off[19], one_euro_track(xs, 25.0, CFG, scales)[19], atol=1e-9)
    if delay == 0:
        np.testing.assert_array_equal(off, one_euro_track(xs, 25.0, CFG, scales))


@pytest.mark.parametrize("bad", [-1, 2.5, True, "2", MAX_FIXED_LAG + 1])
def test_a_bad_delay_is_refused_naming_the_value_and_the_valid_range(bad):
    with pytest.raises(ValueError, match=rf"delay must be an int from 0 to {MAX_FIXED_LAG} \(frames\), "
                                         rf"got {bad!r}"):
        FixedLagOneEuro(CFG, bad)
    with pytest.raises(ValueError, match=rf"from 0 to {MAX_FIXED_LAG} \(frames\), got {bad!r}"):
        fixed_lag_one_euro_track(np.zeros((5, 17, 2)), 30.0, CFG, bad)


def test_a_bad_method_or_scale_is_refused():
    with pytest.raises(ValueError, match=r"method must be one of \('forward-backward', 'triangular'\), "
                                         r"got 'median'"):
        FixedLagOneEuro(CFG, 2, "median")
    with pytest.raises(ValueError, match="scale must be > 0, got 0.0"):
        FixedLagOneEuro(CFG, 2).push(np.zeros((17, 2)), 0.0, scale=0.0)
