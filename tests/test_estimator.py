"""PoseEstimator: running modes, tracking on a real clip, live stream drops, bad input."""

import json
import re
import threading
import time

import numpy as np
import pytest

from edgepose.backends.base import TensorSpec
from edgepose.backends.null import NullBackend
from edgepose.errors import EdgePoseError
from edgepose.estimator import EstimatorOptions, PoseEstimator
from edgepose.models.movenet import MoveNet
from edgepose.types import KEYPOINT_NAMES, Source
from edgepose.video.sources import VideoFileSource


def _fake_movenet(delay_s: float = 0.0, score: float = 0.9) -> MoveNet:
    """A MoveNet card on a null backend that always answers a centred standing person."""
    out = np.zeros((1, 1, 17, 3), np.float32)
    out[0, 0, :, 0] = np.linspace(0.35, 0.65, 17)  # y
    out[0, 0, :, 1] = 0.5                          # x
    out[0, 0, :, 2] = score

    def fn(feeds):
        time.sleep(delay_s)
        return {"out": out.copy()}

    be = NullBackend(inputs=[TensorSpec("in", (1, 192, 192, 3), np.dtype(np.uint8))],
                     outputs={"out": out}, fn=fn)
    return MoveNet(be, name="fake")


FRAME = np.zeros((240, 320, 3), np.uint8)


@pytest.mark.core
def test_each_running_mode_allows_only_its_own_method():
    est = PoseEstimator(_fake_movenet())
    with pytest.raises(EdgePoseError, match=re.escape(
            "detect_for_video() needs running_mode='video', but this estimator was created with "
            "running_mode='image'")):
        est.detect_for_video(FRAME, 0)
    assert est.detect(FRAME).source is Source.EDGE


@pytest.mark.core
def test_video_timestamps_must_increase():
    est = PoseEstimator(_fake_movenet(), options=EstimatorOptions(running_mode="video"))
    est.detect_for_video(FRAME, 10)
    with pytest.raises(EdgePoseError, match=re.escape("timestamp_ms must increase monotonically: got 10 after 10")):
        est.detect_for_video(FRAME, 10)


@pytest.mark.core
@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), "img"])
def test_bad_image_names_what_was_expected(bad):
    with pytest.raises(EdgePoseError, match=re.escape("image must be an (H, W, 3) uint8 RGB numpy array")):
        PoseEstimator(_fake_movenet()).detect(bad)


@pytest.mark.core
def test_options_validate_with_field_names():
    with pytest.raises(ValueError, match=re.escape("EstimatorOptions.running_mode 'movie' is not one of image, video, live_stream")):
        EstimatorOptions(running_mode="movie")
    with pytest.raises(ValueError, match=re.escape("EstimatorOptions.result_callback is required in live_stream mode")):
        EstimatorOptions(running_mode="live_stream")
    with pytest.raises(ValueError, match=re.escape("EstimatorOptions.min_pose_score must be in [0, 1], got 2")):
        EstimatorOptions(min_pose_score=2)


@pytest.mark.core
def test_video_mode_tracks_the_crop_from_the_previous_pose():
    model = _fake_movenet()
    est = PoseEstimator(model, options=EstimatorOptions(running_mode="video", smoothing=False))
    r0 = est.detect_for_video(FRAME, 0)
    first_roi = est._roi
    r1 = est.detect_for_video(FRAME, 33)
    assert r0.pose is not None and r1.pose is not None
    assert first_roi is not None and first_roi.width < 320  # tracked crop tighter than the full frame
    assert r1.frame_index == 1 and r1.timestamp_ms == 33 and r1.pose.track_id == 0


@pytest.mark.core
def test_lost_pose_gives_an_empty_result_and_redetects():
    est = PoseEstimator(_fake_movenet(score=0.05), options=EstimatorOptions(running_mode="video"))
    r = est.detect_for_video(FRAME, 0)
    assert r.poses == [] and est._roi is None


@pytest.mark.core
def test_live_stream_drops_the_oldest_waiting_frame_and_counts_it():
    got = []
    done = threading.Event()

    def cb(result, image):
        got.append(result.timestamp_ms)
        if result.timestamp_ms == 19:
            done.set()

    est = PoseEstimator(_fake_movenet(delay_s=0.02),
                        options=EstimatorOptions(running_mode="live_stream", result_callback=cb))
    for ts in range(20):  # 20 frames submitted far faster than 50 frames/s
        est.detect_async(FRAME, ts)
    assert done.wait(5)
    est.close()
    assert got[-1] == 19                       # the newest frame is always processed
    assert len(got) + est.dropped_frames == 20  # every frame is either answered or counted
    assert est.dropped_frames > 0
    assert got == sorted(got)


@pytest.mark.backend
def test_tracked_thunder_agrees_with_the_tfjs_reference_track(assets):
    ref = json.loads((assets / "data/tfjs_testdata/pose_1.json").read_text())
    ref_kps = np.array([[[f[n]["x"], f[n]["y"]] for n in KEYPOINT_NAMES] for f in ref])
    est = PoseEstimator("movenet-thunder-fp32", options=EstimatorOptions(running_mode="video"))
    pred = []
    with VideoFileSource(assets / "data/tfjs_testdata/pose_1.mp4", max_frames=40) as src:
        for fr in src:
            r = est.detect_for_video(fr.image, fr.timestamp_ms)
            pred.append(r.pose.keypoints)
    est.close()
    ref_kps = ref_kps[: len(pred)]
    err = np.linalg.norm(np.array(pred) - ref_kps, axis=2)
    torso = (np.linalg.norm(ref_kps[:, 5] - ref_kps[:, 12], axis=1)
             + np.linalg.norm(ref_kps[:, 6] - ref_kps[:, 11], axis=1)) / 2
    pck = (err < 0.2 * torso[:, None]).mean()
    assert pck >= 0.90, f"PCK@0.2 torso {pck:.3f}"


@pytest.mark.core
def test_reseed_sets_the_next_crop_from_an_external_pose():
    est = PoseEstimator(_fake_movenet(), options=EstimatorOptions(running_mode="video"))
    kps = np.stack([np.full(17, 100.0), np.linspace(50, 150, 17)], axis=1)
    assert est.reseed(kps, np.full(17, 0.9), (320, 240))
    assert abs(est._roi.cx - 100) < 1e-3
    assert not est.reseed(kps, np.full(17, 0.01), (320, 240)) and est._roi is None


@pytest.mark.core
def test_smoother_option_is_validated_with_the_choices():
    with pytest.raises(ValueError, match=re.escape(
            "EstimatorOptions.smoother 'kalman' is not one of none, one_euro, learned_gain, fixed_lag_one_euro, "
            "learned_gain_fixed_lag, learned; pass smoother='one_euro' (default), another of those names, or a "
            "Smoother instance")):
        EstimatorOptions(smoother="kalman")
    with pytest.raises(ValueError, match="EstimatorOptions.smoother <object object at .*> is not one of"):
        EstimatorOptions(smoother=object())


@pytest.mark.backend
def test_learned_smoother_in_video_mode_runs_zero_lag_and_steadies_the_track(assets):
    """smoother='learned' equals running LearnedSmoother(delay=0) on the unsmoothed track, and
    its acceleration (jitter) is lower than the raw per-frame output's."""
    from edgepose.video.smoother import LearnedSmoother, SmootherOptions

    def track(**kw):
        est = PoseEstimator("movenet-lightning-int8", options=EstimatorOptions(running_mode="video", **kw))
        out = []
        with VideoFileSource(assets / "data/tfjs_testdata/pose_1.mp4", max_frames=60) as src:
            for fr in src:
                r = est.detect_for_video(fr.image, fr.timestamp_ms)
                out.append((r.timestamp_ms, r.pose.keypoints, r.pose.scores))
        est.close()
        return out

    raw = track(smoother="none")
    learned = track(smoother="learned")
    assert [t for t, _, _ in raw] == [t for t, _, _ in learned]
    with LearnedSmoother(SmootherOptions(delay=0)) as sm:
        ref = np.array([sm.push(k, t, scores=s)[0].keypoints for t, k, s in raw])
    got = np.array([k for _, k, _ in learned])
    np.testing.assert_allclose(got, ref, atol=1e-3)
    raw_kps = np.array([k for _, k, _ in raw])
    accel = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()  # noqa: E731
    assert accel(got) < accel(raw_kps)
