"""Learned-gain One Euro: untrained it is One Euro, torch/runtime parity, zero lag, restarts, errors."""

import json

import numpy as np
import pytest

from edgepose.video.gain_filter import DEFAULT_MODEL, LearnedGainFilter
from edgepose.video.one_euro import OneEuroConfig, OneEuroFilter


def _track(n=60, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None, None]
    base = 200 + 40 * np.sin(t / 9.0 + np.arange(17)[None, :, None] / 3.0) + np.zeros((1, 17, 2))
    kps = base + rng.normal(0, 2.0, (n, 17, 2))
    scores = rng.uniform(0.1, 0.9, (n, 17))
    return kps, scores


@pytest.mark.core
def test_the_shipped_model_has_zero_delay_and_restarts_after_a_gap():
    kps, sc = _track()
    scales = np.full(len(kps), 180.0)
    f = LearnedGainFilter()
    out = f.filter_track(kps, sc, 30.0, scales)
    changed = kps.copy()
    changed[40:] += 50.0  # the future changes: nothing before frame 40 may move
    out2 = f.filter_track(changed, sc, 30.0, scales)
    np.testing.assert_array_equal(out[:40], out2[:40])
    assert not np.allclose(out[40:], out2[40:])
    gap = kps.copy()
    gap[20] = np.nan
    out3 = f.filter_track(gap, sc, 30.0, scales)
    assert np.isnan(out3[20]).all()
    np.testing.assert_array_equal(out3[21], kps[21])  # first frame after the gap: the observation itself
    # It smooths: less frame-to-frame acceleration than the noisy input.
    acc = lambda x: np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).mean()  # noqa: E731
    assert acc(out[1:]) < 0.7 * acc(kps[1:])


@pytest.mark.core
def test_bad_inputs_are_refused_with_the_fix(tmp_path):
    f = LearnedGainFilter()
    with pytest.raises(ValueError, match="needs the keypoint scores"):
        f(np.zeros((17, 2)), 0.0, scale=100.0)
    with pytest.raises(ValueError, match=r"\(17, 2\) keypoints, got shape \(5, 2\)"):
        f(np.zeros((5, 2)), 0.0, scale=100.0, scores=np.ones(5))
    with pytest.raises(ValueError, match="scale must be > 0"):
        f(np.zeros((17, 2)), 0.0, scale=0.0, scores=np.ones(17))
    from edgepose.errors import ConfigError

    with pytest.raises(ConfigError, match="not found; pass model_path"):
        LearnedGainFilter(tmp_path / "missing.onnx")
    assert DEFAULT_MODEL.is_file()


@pytest.mark.torch
def test_untrained_it_is_one_euro_and_the_runtime_matches_the_torch_recursion(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgepose.compression.temporal.gain import GainNet, export_gain, unroll

    kps, sc = _track(80, seed=1)
    scales = np.full(len(kps), 150.0)
    path = export_gain(GainNet(), tmp_path / "zero.onnx")
    ours = LearnedGainFilter(path).filter_track(kps, sc, 30.0, scales)
    oe = OneEuroFilter(OneEuroConfig())
    ref = np.stack([oe(k, i * 1000.0 / 30.0, scale=150.0) for i, k in enumerate(kps)])
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    # A random (trained-like) network: the numpy + ONNX Runtime filter equals the torch unroll.
    torch.manual_seed(3)
    net = GainNet().double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    path = export_gain(net, tmp_path / "rand.onnx")
    ours = LearnedGainFilter(path).filter_track(kps, sc, 30.0, scales)
    t = lambda a: torch.tensor(a)[None]  # noqa: E731
    with torch.no_grad():
        theirs = unroll(net, t(kps), t(sc), t(np.ones(len(kps), bool)), t(scales), t(np.full(len(kps), 1 / 30.0)))[0]
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-3)  # float32 network at run time
    assert not np.allclose(ours, ref, atol=0.5)  # and it is not One Euro any more


@pytest.mark.backend
def test_the_estimator_runs_it_in_video_mode(assets):
    from edgepose.estimator import EstimatorOptions, PoseEstimator
    from edgepose.video.sources import VideoFileSource

    src = VideoFileSource(str(assets / "data/tfjs_testdata/pose_1.mp4"), max_frames=6)
    with PoseEstimator("movenet-lightning-int8", options=EstimatorOptions(running_mode="video",
                                                                         smoother="learned_gain")) as est:
        res = [est.detect_for_video(f.image, f.timestamp_ms) for f in src]
    assert all(r.poses and np.isfinite(r.poses[0].keypoints).all() for r in res)
    assert all("smooth" in r.timings_ms for r in res[1:])
    with pytest.raises(ValueError, match="another of those names, or a Smoother instance"):
        EstimatorOptions(smoother="gain")


@pytest.mark.torch
def test_a_body_context_network_matches_its_torch_recursion_and_reads_the_median_of_all_joints(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgepose.compression.temporal.gain import GainNet, export_gain, unroll
    from edgepose.video.gain_filter import BODY_FEATURES, gain_features

    kps, sc = _track(70, seed=4)
    scales = np.full(len(kps), 150.0)
    # Untrained, the body network is One Euro too.
    ours = LearnedGainFilter(export_gain(GainNet(body=True), tmp_path / "zero7.onnx")).filter_track(kps, sc, 30.0, scales)
    oe = OneEuroFilter(OneEuroConfig())
    np.testing.assert_allclose(ours, np.stack([oe(k, i * 1000.0 / 30.0, scale=150.0) for i, k in enumerate(kps)]),
                               atol=1e-9)
    torch.manual_seed(5)
    net = GainNet(body=True).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    f = LearnedGainFilter(export_gain(net, tmp_path / "rand7.onnx"))
    assert f.body and json.loads(f.metadata["edgepose.features"]) == list(BODY_FEATURES)
    ours = f.filter_track(kps, sc, 30.0, scales)
    t = lambda a: torch.tensor(a)[None]  # noqa: E731
    with torch.no_grad():
        theirs = unroll(net, t(kps), t(sc), t(np.ones(len(kps), bool)), t(scales), t(np.full(len(kps), 1 / 30.0)))[0]
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-3)
    # The body columns: the same value for every joint, the median (the 9th of 17) of the per-joint column.
    inn = np.arange(17, dtype=float)[::-1] / 10.0
    feats = gain_features(np.ones(17), np.ones(17), inn, 2 * inn, 1 / 30.0, body=True)
    assert feats.shape == (17, 7)
    np.testing.assert_allclose(feats[:, 5], np.log1p(20 * 0.8), rtol=1e-6)
    np.testing.assert_allclose(feats[:, 6], np.log1p(2 * 1.6), rtol=1e-6)


@pytest.mark.torch
def test_a_network_with_another_feature_count_is_refused_with_the_fix(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgepose.errors import ConfigError

    path = tmp_path / "six.onnx"
    torch.onnx.export(torch.nn.Linear(6, 2), (torch.zeros(1, 17, 6),), str(path), input_names=["features"],
                      output_names=["gain"], opset_version=17, dynamo=False)
    with pytest.raises(ConfigError, match=r"takes 6 features per joint; this version reads 5 \(FEATURES\) or 7"):
        LearnedGainFilter(path)
