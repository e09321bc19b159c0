"""One smoother interface: every registered smoother answers frame t - delay, and the estimator takes any."""

import threading

import numpy as np
import pytest

from edgepose.backends.base import TensorSpec
from edgepose.backends.null import NullBackend
from edgepose.errors import UnknownNameError
from edgepose.estimator import EstimatorOptions, PoseEstimator
from edgepose.models.movenet import MoveNet
from edgepose.video.one_euro import FixedLagOneEuro, OneEuroConfig, OneEuroFilter
from edgepose.video.smoothing import (TUNED_FIXED_LAG, FixedLagSmoother, OneEuroSmoother, is_smoother,
                                      list_smoothers, make_smoother)

FRAME = np.zeros((240, 320, 3), np.uint8)


def _fake_movenet(score: float = 0.9) -> MoveNet:
    """A MoveNet card on a null backend that always answers a centred standing person."""
    out = np.zeros((1, 1, 17, 3), np.float32)
    out[0, 0, :, 0] = np.linspace(0.35, 0.65, 17)
    out[0, 0, :, 1] = 0.5
    out[0, 0, :, 2] = score
    be = NullBackend(inputs=[TensorSpec("in", (1, 192, 192, 3), np.dtype(np.uint8))], outputs={"out": out})
    return MoveNet(be, name="fake")

RNG = np.random.default_rng(3)
BASE = np.stack([np.linspace(100, 200, 17), np.linspace(50, 250, 17)], axis=1)


def _track(n=14, gap=(6,)):
    kps = [BASE + [3.0 * i, 0.0] + RNG.normal(0, 2.0, (17, 2)) for i in range(n)]
    return [None if i in gap else k for i, k in enumerate(kps)], np.full(17, 0.9)


def _needs_backend(name):
    return name in ("learned_gain", "learned_gain_fixed_lag", "learned")


@pytest.mark.core
def test_the_registry_lists_the_shipped_smoothers_and_refuses_an_unknown_name():
    assert list_smoothers() == ("none", "one_euro", "learned_gain", "fixed_lag_one_euro",
                                "learned_gain_fixed_lag", "learned")
    with pytest.raises(UnknownNameError, match="unknown smoother 'kalman'; valid choices: fixed_lag_one_euro, "
                                               "learned, learned_gain, learned_gain_fixed_lag, none, one_euro"):
        make_smoother("kalman")
    with pytest.raises(ValueError, match="dict is not a smoother: it needs an int delay"):
        make_smoother({})
    sm = OneEuroSmoother()
    assert make_smoother(sm) is sm and is_smoother(sm)


@pytest.mark.parametrize("name", list_smoothers())
def test_every_smoother_answers_frame_t_minus_delay_once_and_flush_gives_the_rest(name):
    if _needs_backend(name):
        pytest.importorskip("onnxruntime")
    kps, scores = _track()
    with_delay = {"none": 0, "one_euro": 0, "learned_gain": 0, "fixed_lag_one_euro": 2,
                  "learned_gain_fixed_lag": 2, "learned": 0}
    sm = make_smoother(name)
    try:
        assert is_smoother(sm) and sm.delay == with_delay[name]
        outs = [sm.update(k, None if k is None else scores, 1000.0 * i / 30, scale=200.0)
                for i, k in enumerate(kps)]
        assert all(o is None for o in outs[:sm.delay])
        outs = outs[sm.delay:] + sm.flush()
        assert len(outs) == len(kps)
        for k, o in zip(kps, outs):
            assert (o is None) == (k is None)
            if o is not None:
                assert o.shape == (17, 2) and o.dtype == np.float32
                assert np.abs(o - k).max() < 15.0  # smoothed, not moved elsewhere
    finally:
        sm.close()


@pytest.mark.core
def test_the_one_euro_and_fixed_lag_adapters_are_the_filters_themselves():
    kps, _ = _track(gap=())
    f, sm = OneEuroFilter(OneEuroConfig()), OneEuroSmoother()
    for i, k in enumerate(kps):
        np.testing.assert_array_equal(sm.update(k, None, 33.0 * i, scale=180.0),
                                      f(k, 33.0 * i, scale=180.0).astype(np.float32))
    ref = FixedLagOneEuro(TUNED_FIXED_LAG, 2, "triangular")
    sm = FixedLagSmoother()
    want = [v.value for i, k in enumerate(kps) for v in ref.push(k, 33.0 * i, scale=180.0)] + \
        [v.value for v in ref.flush()]
    got = [sm.update(k, None, 33.0 * i, scale=180.0) for i, k in enumerate(kps)][2:] + sm.flush()
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=0, atol=1e-4)


class _Recording:
    """A smoother that shifts every pose by +1 px, with a declared delay, and records what it was given."""

    def __init__(self, delay):
        self.delay, self.seen, self.resets, self.closed = delay, [], 0, False
        self._pending = []

    def reset(self):
        self.resets += 1
        self._pending = []

    def update(self, keypoints, scores, timestamp_ms, *, scale=None):
        self.seen.append((timestamp_ms, keypoints is not None, scale))
        self._pending.append(None if keypoints is None else np.asarray(keypoints, np.float32) + 1.0)
        return self._pending.pop(0) if len(self._pending) > self.delay else None

    def flush(self):
        out, self._pending = self._pending, []
        return out

    def close(self):
        self.closed = True


@pytest.mark.core
@pytest.mark.parametrize("delay", [0, 3])
def test_the_estimator_takes_a_smoother_instance_and_delays_its_results_by_its_delay(delay):
    sm = _Recording(delay)
    raw_est = PoseEstimator(_fake_movenet(), options=EstimatorOptions(running_mode="video", smoother="none"))
    est = PoseEstimator(_fake_movenet(), options=EstimatorOptions(running_mode="video", smoother=sm))
    assert est.delay == delay
    got = [est.detect_for_video(FRAME, 10 * i) for i in range(8)]
    assert got[:delay] == [None] * delay
    got = got[delay:] + est.flush()
    assert [r.frame_index for r in got] == list(range(8)) and [r.timestamp_ms for r in got] == [10 * i for i in range(8)]
    raw = [raw_est.detect_for_video(FRAME, 10 * i) for i in range(8)]
    for r, q in zip(got, raw):
        np.testing.assert_allclose(r.pose.keypoints, q.pose.keypoints + 1.0)
        assert "smooth" in r.timings_ms
    assert all(seen and s > 0 for _, seen, s in sm.seen[1:])  # poses with the crop side as scale
    est.close()
    raw_est.close()
    assert not sm.closed  # the caller's instance is the caller's to close


@pytest.mark.core
def test_a_lost_pose_is_a_gap_and_reset_flushes_the_waiting_frames_first():
    sm = _Recording(2)
    est = PoseEstimator(_fake_movenet(), options=EstimatorOptions(running_mode="video", smoother=sm))
    out = [est.detect_for_video(FRAME, 10 * i) for i in range(4)]
    est.reset()  # a scene cut: the two waiting frames get their smoothed poses, the smoother restarts
    out += [est.detect_for_video(FRAME, 10 * i) for i in range(4, 7)]
    out = [r for r in out if r is not None] + est.flush()
    assert [r.frame_index for r in out] == list(range(7)) and all(r.pose is not None for r in out)
    assert sm.resets >= 1
    weak = PoseEstimator(_fake_movenet(score=0.05), options=EstimatorOptions(running_mode="video",
                                                                             smoother=_Recording(1)))
    res = [weak.detect_for_video(FRAME, 10 * i) for i in range(3)]
    assert res[0] is None and [r.pose for r in res[1:] + weak.flush()] == [None, None, None]
    assert [seen for _, seen, _ in weak.options.smoother.seen] == [False, False, False]


@pytest.mark.core
def test_a_delayed_smoother_in_live_stream_mode_delivers_every_processed_frame_in_order_by_close():
    got, lock = [], threading.Lock()

    def cb(result, image):
        with lock:
            got.append(result.frame_index)

    est = PoseEstimator(_fake_movenet(), options=EstimatorOptions(running_mode="live_stream", smoother="fixed_lag_one_euro",
                                                                  result_callback=cb, live_queue_size=8))
    for i in range(6):
        est.detect_async(FRAME, 10 * i)
    est.close()
    assert got == list(range(6 - est.dropped_frames))


@pytest.mark.core
def test_the_offload_runtime_refuses_an_estimator_whose_results_come_late():
    pytest.importorskip("cv2")
    from edgepose.offload.runtime import CloudEdgeRuntime

    est = PoseEstimator(_fake_movenet(), options=EstimatorOptions(running_mode="video", smoother="fixed_lag_one_euro"))
    with pytest.raises(ValueError, match="CloudEdgeRuntime needs an estimator whose results are not delayed"):
        CloudEdgeRuntime(est)
    est.close()
