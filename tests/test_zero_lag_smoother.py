"""The zero-lag smoother with a One Euro prefilter input (PriorSmoothNet): training and runtime
compute the same prefilter, an untrained model is exactly One Euro, a trained correction is
causal, and a missing clock is refused with a clear message."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from edgepose.video._temporal import frame_side, one_euro_batch  # noqa: E402
from edgepose.video.one_euro import OneEuroConfig, OneEuroFilter  # noqa: E402


def _track(n=60, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 120, size=(17, 2)) + 100.0
    t = np.arange(n, dtype=float)[:, None, None]
    clean = base[None] + 3.0 * t * np.array([1.0, 0.3]) + 12.0 * np.sin(2 * np.pi * t / 30)
    return clean + rng.normal(0, 2.0, size=clean.shape)


def _export(tmp_path, *, zero_decoder: bool, scores: bool = False):
    from edgepose.compression.export.temporal import export_onnx
    from edgepose.compression.temporal.models import TemporalNetConfig, build

    torch.manual_seed(0)
    model = build("smoother", TemporalNetConfig(window=16, hidden=24, blocks=1), prior=True, scores=scores)
    if not zero_decoder:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    cfg = OneEuroConfig()
    path = tmp_path / "prior.onnx"
    export_onnx(model.eval(), path, limits={
        "edgepose.max_delay": "0",
        "edgepose.prefilter": json.dumps({"kind": "one_euro", "min_cutoff": cfg.min_cutoff,
                                          "beta": cfg.beta, "d_cutoff": cfg.d_cutoff})})
    return path


def test_batched_training_prefilter_equals_the_streaming_filter():
    cfg = OneEuroConfig(min_cutoff=1.0, beta=7.0, d_cutoff=1.0)
    seqs = np.stack([_track(seed=s) for s in range(3)])  # (3, 60, 17, 2)
    fps = np.array([30.0, 10.0, 50.0])
    got = one_euro_batch(seqs, 1.0 / fps, frame_side(seqs), cfg)
    for b in range(3):
        f = OneEuroFilter(cfg)
        want = np.stack([f(k, i * 1000.0 / fps[b], scale=float(frame_side(k))) for i, k in enumerate(seqs[b])])
        np.testing.assert_allclose(got[b], want, rtol=0, atol=1e-9)
    assert not np.allclose(got, seqs)  # it did filter


def test_untrained_prior_model_is_exactly_the_one_euro_filter(tmp_path):
    from edgepose.video.tracks import one_euro_track
    from edgepose.video.smoother import LearnedSmoother, SmootherOptions

    kps = _track()
    kps[25:27] = np.nan  # a gap restarts the filter in both
    ts = np.arange(len(kps)) * 1000.0 / 30
    with LearnedSmoother(SmootherOptions(model_path=_export(tmp_path, zero_decoder=True), delay=0)) as sm:
        assert sm.prefilter == OneEuroConfig()
        got = sm.smooth_track(kps, timestamps_ms=ts)
    want = one_euro_track(kps, 30.0, OneEuroConfig())  # scale: each frame's pose box side
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert np.isnan(got[25:27]).all()


def test_trained_prior_model_is_causal_and_the_estimator_path_matches(tmp_path):
    from edgepose.video.smoother import LearnedSmoother, SmootherOptions

    kps = _track()
    changed = kps.copy()
    changed[40:] += 30.0
    ts = np.arange(len(kps)) * 1000.0 / 30
    path = _export(tmp_path, zero_decoder=False)
    with LearnedSmoother(SmootherOptions(model_path=path, delay=0)) as sm:
        a = sm.smooth_track(kps, timestamps_ms=ts)
        b = sm.smooth_track(changed, timestamps_ms=ts)
        sm.reset()
        pushed = np.stack([sm.push(k, t)[0].keypoints for k, t in zip(kps, ts)])
    np.testing.assert_array_equal(a[:40], b[:40])  # never reads a later frame
    assert not np.allclose(a[40], b[40])
    np.testing.assert_allclose(pushed, a, atol=1e-4)  # push (the estimator's path) = smooth_track


def test_score_input_model_reads_the_scores_and_asks_for_them(tmp_path):
    from edgepose.video.smoother import LearnedSmoother, SmootherOptions

    kps = _track()
    ts = np.arange(len(kps)) * 1000.0 / 30
    conf = np.full((len(kps), 17), 0.9)
    low = conf.copy()
    low[30:, 5] = 0.1  # one joint turns unsure from frame 30 on
    with LearnedSmoother(SmootherOptions(model_path=_export(tmp_path, zero_decoder=False, scores=True),
                                         delay=0)) as sm:
        assert sm.reads_scores
        a = sm.smooth_track(kps, conf, timestamps_ms=ts)
        b = sm.smooth_track(kps, low, timestamps_ms=ts)
        with pytest.raises(ValueError, match=r"reads the keypoint scores: pass scores="):
            sm.push(kps[0], 0)
    np.testing.assert_array_equal(a[:30], b[:30])  # causal in the scores too
    assert not np.allclose(a[30:], b[30:])


def test_prefiltered_model_needs_frame_times(tmp_path):
    from edgepose.video.smoother import LearnedSmoother, SmootherOptions

    with LearnedSmoother(SmootherOptions(model_path=_export(tmp_path, zero_decoder=True), delay=0)) as sm:
        with pytest.raises(ValueError, match=r"has a One Euro prefilter.*pass timestamps_ms="):
            sm.smooth_track(_track())


def test_few_prior_training_steps_lower_the_loss_below_one_euro():
    """On a synthetic jittery walk the correction learns something One Euro does not do."""
    from edgepose.compression.temporal.models import TemporalNetConfig
    from edgepose.compression.temporal.train import SeqBatcher, TemporalTrainConfig, seq_loss
    from edgepose.compression.temporal.windows import Seq, WindowBank

    cfg = TemporalTrainConfig(net=TemporalNetConfig(window=16, hidden=32, blocks=1, dropout=0.0), prior=True,
                      max_delay=0, zero_lag_prob=1.0, batch=16, emit_frames=4, start_pad_prob=0.0)
    rng = np.random.default_rng(1)
    seqs = []
    for s in range(4):
        clean = _track(n=120, seed=s)
        seqs.append(Seq(clean + rng.normal(0, 3.0, clean.shape), clean, np.ones((120, 17)), 30.0, f"s{s}"))
    bank = WindowBank(seqs, 16 + 4 - 1)
    bt = SeqBatcher(bank, cfg, np.random.default_rng(0))
    fixed = SeqBatcher(bank, cfg, np.random.default_rng(5)).draw(idx=np.arange(0, len(bank), 3), delay=0)
    from edgepose.compression.temporal.models import build

    torch.manual_seed(0)
    model = build("smoother", cfg.net, prior=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        before = seq_loss(model.eval(), fixed, 1.0)[0].item()  # = the One Euro prefilter alone
    for _ in range(100):
        loss = seq_loss(model.train(), bt.draw(), 1.0)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = seq_loss(model.eval(), fixed, 1.0)[0].item()
    assert after < 0.97 * before


@pytest.mark.slow
@pytest.mark.parametrize("kind,prior", [("smoother", True), ("smoother", False), ("recovery", False)])
def test_tflite_export_of_the_temporal_models_matches_torch_and_onnx(kind, prior, tmp_path):
    """TFLite (litert-torch, one 34-channel window) = torch; the runtime runs it window by window."""
    pytest.importorskip("litert_torch")
    from edgepose.compression.export.temporal import PARITY_ATOL, example_input, export_onnx, export_tflite
    from edgepose.compression.temporal.models import TemporalNetConfig, build
    from edgepose.video._temporal import TemporalModel

    torch.manual_seed(0)
    model = build(kind, TemporalNetConfig(window=16, hidden=24, blocks=1), prior=prior)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    assert export_tflite(model, tmp_path / "m.tflite") <= PARITY_ATOL
    export_onnx(model, tmp_path / "m.onnx")
    x = example_input(model, 68, seed=7).numpy()  # two windows
    lite = TemporalModel(tmp_path / "m.tflite", kind=kind, default_file="unused")
    ort = TemporalModel(tmp_path / "m.onnx", kind=kind, default_file="unused")
    try:
        assert lite.window == 16 and ("edgepose.inputs" in lite.metadata) == prior
        np.testing.assert_allclose(lite(x), ort(x), atol=PARITY_ATOL)
    finally:
        lite.close()
        ort.close()
