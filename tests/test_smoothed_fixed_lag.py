"""SmoothedFixedLag: the learned smoother followed by a fixed-lag One Euro stage (issue 7, round D)."""

import numpy as np
import pytest

from edgepose.eval.temporal_report import fixed_lag_from_forward, one_euro_track
from edgepose.video.one_euro import OneEuroConfig
from edgepose.video.smoother import LearnedSmoother, SmoothedFixedLag, SmootherOptions
from tests._fixed_lag_tracks import noisy_track

pytestmark = pytest.mark.backend

FPS = 30.0
CFG = OneEuroConfig(3.0, 0.5, 1.0)


def _online(chain, track, scales, fps=FPS):
    """Push every frame; returns ((N, 17, 2) in input order, [(pushed frame, emitted indices)])."""
    outs, when = [], []
    for i, (k, s) in enumerate(zip(track, scales)):
        ok = np.isfinite(k).all()
        got = chain.push(k if ok else None, i * 1000.0 / fps, scale=float(s))
        when.append((i, [g.index for g in got]))
        outs += got
    outs += chain.flush()
    assert [o.index for o in outs] == list(range(len(track))), "a frame was lost, repeated or reordered"
    return np.stack([o.keypoints if o.keypoints is not None else np.full((17, 2), np.nan) for o in outs]), when


@pytest.mark.parametrize("d_s,d_f", [(1, 1), (2, 2), (0, 3)])
def test_online_equals_the_two_stage_replay(d_s, d_f):
    x, scales = noisy_track(90, seed=3, gaps=(30, 31, 60))
    with SmoothedFixedLag(SmootherOptions(delay=d_s), CFG, d_f) as ch:
        assert ch.delay == d_s + d_f
        online, when = _online(ch, x, scales)
    with LearnedSmoother(SmootherOptions(delay=d_s)) as sm:
        first = sm.smooth_track(x, timestamps_ms=np.arange(len(x)) * 1000.0 / FPS).astype(np.float64)
    fwd = one_euro_track(first, FPS, CFG, scales)
    want = fixed_lag_from_forward(first, fwd, FPS, CFG, d_f, scales, method="triangular")
    assert np.array_equal(np.isnan(online), np.isnan(want))
    np.testing.assert_allclose(np.nan_to_num(online), np.nan_to_num(want), atol=1e-3)
    assert np.isnan(online[[30, 31, 60]]).all()  # no pose in, no pose out
    # frame t - delay is emitted when frame t arrives, exactly one per push after the look-ahead
    for t, idx in when:
        assert idx == ([] if t < d_s + d_f else [t - d_s - d_f])


def test_never_reads_beyond_its_declared_delay():
    x, scales = noisy_track(70, seed=5)
    d_s, d_f = 2, 2
    with SmoothedFixedLag(SmootherOptions(delay=d_s), CFG, d_f) as ch:
        ref, _ = _online(ch, x, scales)
        for t in (10, 40):
            ch.reset()
            y = x.copy()
            y[t + d_s + d_f + 1:] += 500.0  # the future beyond the delay changes wildly
            got, _ = _online(ch, y, scales)
            np.testing.assert_array_equal(got[: t + 1], ref[: t + 1])
            assert not np.allclose(got[t + 1:], ref[t + 1:])  # and it does matter later on
            ch.reset()
            z = x.copy()
            z[t + d_s + d_f] += 500.0  # the newest frame inside the delay is read
            got, _ = _online(ch, z, scales)
            assert not np.allclose(got[t], ref[t])


def test_smoothing_cuts_jitter_and_bad_scale_is_refused():
    x, scales = noisy_track(120, seed=7)
    with SmoothedFixedLag(SmootherOptions(delay=2), CFG, 2) as ch:
        out, _ = _online(ch, x, scales)
        acc = lambda a: np.abs(np.diff(a, 2, axis=0)).mean()  # noqa: E731
        assert acc(out) < 0.5 * acc(x)
        ch.reset()
        with pytest.raises(ValueError, match="scale must be > 0"):
            ch.push(x[0], 0.0, scale=0.0)
    # without a scale the pose's own box side is used, and every frame still comes out
    with SmoothedFixedLag(SmootherOptions(delay=1), CFG, 1) as ch:
        got = [f for i, k in enumerate(x[:10]) for f in ch.push(k, i * 33.3)] + ch.flush()
    assert len(got) == 10
