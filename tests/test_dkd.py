"""DKD for video: kernel localisation on synthetic features, losses with known values, training,
ONNX export parity and the runtime card's keyframe logic."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepose.compression.distill.dkd import (ClipSet, DKDTrainConfig, dkd_losses,  # noqa: E402
                                              temporal_consistency, train_dkd)
from edgepose.compression.students.dkd_model import DKDConfig, DKDPose, export_dkd, unfold_same  # noqa: E402

pytestmark = pytest.mark.torch


def test_unfold_same_gathers_zero_padded_neighbourhoods():
    f = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)
    cols = unfold_same(f, 3)  # (1, 9, 9): row = (dy, dx), column = cell
    assert cols.shape == (1, 9, 9)
    assert cols[0, :, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 3, 4]  # top-left cell's 3x3 window
    assert cols[0, 4].tolist() == list(range(9))  # the centre tap is the map itself


def _signature_features(c: int, at: tuple[int, int], sig: torch.Tensor, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f = 0.05 * torch.randn(1, c, size, size, generator=g)
    f[0, :, at[0], at[1]] = sig
    return f


class _CentreTap(torch.nn.Module):
    """(N, J, C) descriptors -> (N, J, k * k * C) kernels, zero except the centre tap (layout (tap, c))."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.c, self.k = c, k

    def forward(self, d):
        n, j, _ = d.shape
        out = torch.zeros(n, j, self.k * self.k, self.c)
        out[:, :, (self.k * self.k) // 2] = d
        return out.reshape(n, j, -1)


@pytest.mark.parametrize("k", [1, 3])
def test_kernels_distilled_from_the_previous_frame_find_the_joint_in_the_next(k):
    """Frame t-1: a joint with a feature signature at (3, 4), its heatmap peaked there. Frame t: the
    signature moved to (11, 9). Pooling + identity kernel generation + convolution find (11, 9)."""
    c = 8
    model = DKDPose(DKDConfig(feat_channels=c, desc_channels=c, kernel_size=k, num_keypoints=1)).eval()
    with torch.no_grad():
        model.proj.weight.copy_(torch.eye(c))
        model.proj.bias.zero_()
        model.joint_embed.zero_()
    centre = (k * k) // 2
    model.to_kernel = _CentreTap(c, k)  # the kernel is the pooled feature, in its centre tap
    sig = torch.tensor([1.0, -1, 2, 0, 1, -2, 1, 1])
    f_prev = _signature_features(c, (3, 4), sig, seed=1)
    heat_prev = torch.zeros(1, 1, 16, 16)
    heat_prev[0, 0, 3, 4] = 1.0
    kern = model.kernels(f_prev, heat_prev)
    torch.testing.assert_close(kern.reshape(1, 1, k * k, c)[0, 0, centre], f_prev[0, :, 3, 4])
    logits = model.localise(_signature_features(c, (11, 9), sig, seed=2), kern)
    assert divmod(int(logits.flatten().argmax()), 16) == (11, 9)


def test_keyframes_are_the_plain_student_and_tracked_frames_add_the_kernel_term():
    torch.manual_seed(0)
    model = DKDPose(DKDConfig(input_size=64)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        key, kern, _ = model.step(x, None)
        torch.testing.assert_close(key, model(x))
        gated_off, _, _ = model.step(x, kern, torch.zeros(1))
        torch.testing.assert_close(gated_off, key)


def test_temporal_consistency_compares_frame_to_frame_changes():
    t = torch.zeros(1, 2, 1, 1, 2)
    t[0, 1, 0, 0, 0] = 0.5  # the teacher's pixel 0 rises by 0.5; pixel 1 stays 0
    p = torch.zeros_like(t)  # the student does not move
    # weights 1 + 10 x max(target t, t-1) = (6, 1); squared change errors (0.25, 0): mean = 1.5 / 2, x 100
    assert temporal_consistency(p, t).item() == pytest.approx(75.0)
    assert temporal_consistency(t, t).item() == 0.0


def test_dkd_losses_add_temporal_only_when_weighted():
    p, t = torch.full((2, 3, 17, 4, 4), 0.1), torch.zeros(2, 3, 17, 4, 4)
    assert set(dkd_losses(p, t, w_temporal=0.0)) == {"heatmap_kd", "spatial_kl"}
    out = dkd_losses(p, t, w_temporal=2.0, w_kl=0.0)
    assert set(out) == {"heatmap_kd", "temporal"}
    assert out["heatmap_kd"].item() == pytest.approx(1.0)  # (0.1)^2 x 100 (no teacher peaks)
    assert out["temporal"].item() == 0.0  # constant prediction, constant target


def _moving_blob_clips(segments: int = 6, length: int = 4, size: int = 64) -> ClipSet:
    rng = np.random.default_rng(0)
    imgs, maps, kps, seg = [], [], [], []
    yy, xx = np.mgrid[0:size // 4, 0:size // 4] + 0.5
    for s in range(segments):
        p, v = rng.uniform(0.3, 0.7, 2), rng.uniform(-0.04, 0.04, 2)
        for _ in range(length):
            img = np.full((size, size, 3), 30, np.uint8)
            y, x = (p * size).astype(int)
            img[y - 4:y + 4, x - 4:x + 4] = 220
            g = np.exp(-((yy - p[0] * size / 4) ** 2 + (xx - p[1] * size / 4) ** 2) / 2.0)
            imgs.append(img)
            maps.append(np.repeat(np.rint(g * 255).astype(np.uint8)[None], 17, 0))
            kps.append(np.tile([p[0], p[1], 0.9], (17, 1)).astype(np.float32))
            seg.append(s)
            p = p + v
    return ClipSet(np.stack(imgs), np.stack(maps), np.stack(kps), np.asarray(seg), [""] * len(seg))


def test_a_few_dkd_training_steps_lower_the_loss():
    from edgepose.compression.data.augment import AugmentConfig

    torch.manual_seed(0)
    model = DKDPose(DKDConfig(input_size=64, widths=(8, 8, 16, 16), feat_channels=16, desc_channels=8))
    cfg = DKDTrainConfig(steps=30, batch_size=4, warmup=3, lr=5e-3, augment=AugmentConfig.none(), val_fraction=0.2,
                         threads=1)
    rep = train_dkd(model, _moving_blob_clips(), cfg, progress=False)
    assert set(rep.terms) == {"heatmap_kd", "spatial_kl", "temporal"}
    assert np.mean(rep.train[-5:]) < 0.8 * np.mean(rep.train[:5])


@pytest.fixture(scope="module")
def dkd_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = DKDPose(DKDConfig(input_size=64, widths=(8, 8, 16, 16), feat_channels=16, desc_channels=8))
    with torch.no_grad():
        model.head.bias.fill_(2.0)  # confident everywhere, so the card carries state between frames
    path = tmp_path_factory.mktemp("dkd") / "dkd.onnx"
    return export_dkd(model, path, keyframe_interval=0)


def test_dkd_export_matches_a_torch_rollout_and_carries_the_card_metadata(dkd_onnx):
    assert dkd_onnx["max_abs_diff"] < 1e-4
    meta = dkd_onnx["metadata"]
    assert meta["edgepose.card"] == "dkd" and meta["edgepose.input_layout"] == "NCHW"


def test_dkd_card_keyframes_first_after_a_lost_track_on_scale_jumps_and_at_the_interval(dkd_onnx):
    from edgepose.backends import open_backend
    from edgepose.models._crop import Roi
    from edgepose.models.dkd import DKDModel, dkd_card_spec

    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    roi = Roi.square(80, 60, 100)
    with DKDModel(open_backend(dkd_onnx["path"], num_threads=1)) as card:
        seen = []
        for r in (roi, roi, roi, Roi.square(80, 60, 200), roi):
            est = card.estimate(frame, r)
            seen.append(card.last_was_keyframe)
        assert est.keypoints.shape == (17, 2) and "infer" in est.timings_ms
        assert seen == [True, False, False, True, True]  # first frame; 2x scale jump; and back
        card.initial_roi(frame)  # the estimator lost the track
        card.estimate(frame, roi)
        assert card.last_was_keyframe
    with DKDModel(open_backend(dkd_onnx["path"], num_threads=1), keyframe_interval=2) as card:
        assert [card.estimate(frame, roi) is not None and card.last_was_keyframe for _ in range(5)] == \
            [True, False, True, False, True]
    assert dkd_card_spec(dkd_onnx["metadata"]).name == "dkd"


def test_dkd_card_runs_in_the_estimators_video_mode(dkd_onnx):
    from edgepose.backends import open_backend
    from edgepose.estimator import EstimatorOptions, PoseEstimator
    from edgepose.models.dkd import DKDModel

    frame = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    card = DKDModel(open_backend(dkd_onnx["path"], num_threads=1))
    with PoseEstimator(card, options=EstimatorOptions(running_mode="video")) as est:
        results = [est.detect_for_video(frame, ts) for ts in (0, 33, 66)]
    card.close()
    assert len(results) == 3


def test_dkd_card_refuses_a_file_without_dkd_metadata(assets):
    from edgepose.backends import open_backend
    from edgepose.errors import ModelLoadError
    from edgepose.models.dkd import DKDModel

    with pytest.raises(ModelLoadError, match="edgepose.card is None, the DKD card needs 'dkd'"):
        DKDModel(open_backend(assets / "models" / "movenet" / "movenet_lightning_fp32.onnx", num_threads=1))


@pytest.mark.slow
def test_dkd_tflite_export_tracks_like_the_onnx_file(tmp_path):
    pytest.importorskip("litert_torch")
    from edgepose.backends import open_backend
    from edgepose.compression.students.dkd_model import export_dkd_tflite
    from edgepose.models._crop import Roi
    from edgepose.models.dkd import DKDModel

    torch.manual_seed(0)
    model = DKDPose(DKDConfig(input_size=64, widths=(8, 8, 16, 16), feat_channels=16, desc_channels=8))
    with torch.no_grad():
        model.head.bias.fill_(2.0)
    res = export_dkd_tflite(model, tmp_path / "dkd.tflite")
    assert res["max_abs_diff"] < 1e-4
    onnx_path = export_dkd(model, tmp_path / "dkd.onnx")["path"]
    frames = np.random.default_rng(0).integers(0, 255, (3, 120, 160, 3), dtype=np.uint8)
    roi = Roi.square(80, 60, 100)
    with DKDModel(open_backend(res["path"], num_threads=1)) as a, DKDModel(open_backend(onnx_path, num_threads=1)) as b:
        for f in frames:
            np.testing.assert_allclose(a.estimate(f, roi).keypoints, b.estimate(f, roi).keypoints, atol=1e-3)
        assert not a.last_was_keyframe
