"""ViTKD and the tiny ViT pose student: losses on hand-made tensors, training, export parity."""

from __future__ import annotations

import numpy as np
import pytest

from tests._synthetic_labels import synthetic_labels

torch = pytest.importorskip("torch")

from edgepose.compression.distill.vitkd import (ViTKD, ViTKDConfig, ViTTrainConfig, heatmap_agreement,  # noqa: E402
                                                masked_mse, random_token_mask, spatial_kl, train_vit)
from edgepose.compression.students.vit import ViTPose, ViTPoseConfig, export_heatmap_student  # noqa: E402

pytestmark = pytest.mark.torch


def _identity_kd(dim: int, grid, **cfg) -> ViTKD:
    """A ViTKD whose aligners are identities and whose generator outputs zeros (known losses)."""
    kd = ViTKD(dim, dim, grid, ViTKDConfig(normalise_teacher=False, **cfg))
    with torch.no_grad():
        for lin in [*kd.aligners, kd.gen_align]:
            lin.weight.copy_(torch.eye(dim))
            lin.bias.zero_()
        for p in kd.generator.parameters():
            p.zero_()
    return kd


def test_masked_mse_averages_only_over_masked_tokens():
    pred = torch.zeros(1, 4, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, False, True, False]])
    # masked tokens 0 and 2: (1 + 1 + 9 + 9) / (2 tokens x 2 channels) = 5
    assert masked_mse(pred, target, mask).item() == pytest.approx(5.0)


def test_random_token_mask_masks_exactly_the_ratio_per_sample():
    m = random_token_mask(3, 20, 0.25, generator=torch.Generator().manual_seed(0))
    assert m.shape == (3, 20) and m.dtype == torch.bool
    assert m.sum(dim=1).tolist() == [5, 5, 5]


def test_mimic_is_the_mse_between_aligned_student_and_teacher_blocks():
    kd = _identity_kd(2, (1, 2), w_generate=0.0)
    s = [torch.zeros(1, 2, 2), torch.ones(1, 2, 2), torch.zeros(1, 2, 2)]
    t = [torch.full((1, 2, 2), 2.0), torch.full((1, 2, 2), 4.0), torch.zeros(1, 2, 2)]
    out = kd(s, t)
    # block 0: (0 - 2)^2 = 4, block 1: (1 - 4)^2 = 9 -> mean 6.5
    assert set(out) == {"vitkd_mimic"}
    assert out["vitkd_mimic"].item() == pytest.approx(6.5)


def test_generation_loss_counts_masked_positions_only_on_a_non_square_grid():
    kd = _identity_kd(2, (2, 3), w_mimic=0.0)  # 2 x 3 grid = 6 tokens; generator outputs zeros
    s = [torch.randn(1, 6, 2)]
    t = torch.arange(12, dtype=torch.float32).reshape(1, 6, 2)
    mask = torch.tensor([[True, False, False, False, False, True]])
    got = kd(s, [t], mask=mask)["vitkd_generate"].item()
    expected = (0 ** 2 + 1 ** 2 + 10 ** 2 + 11 ** 2) / 4  # tokens 0 and 5, both channels
    assert got == pytest.approx(expected)
    t2 = t.clone()
    t2[0, 1:5] = 1e3  # unmasked tokens do not matter
    assert kd(s, [t2], mask=mask)["vitkd_generate"].item() == pytest.approx(expected)


def test_generation_rejects_a_grid_that_does_not_match_the_tokens():
    kd = _identity_kd(2, (2, 2))
    with pytest.raises(ValueError, match="grid"):
        kd.generate(torch.zeros(1, 6, 2), torch.zeros(1, 6, 2), torch.ones(1, 6, dtype=torch.bool))


def test_normalised_teacher_targets_are_layer_normalised_tokens():
    kd = ViTKD(2, 2, (1, 1), ViTKDConfig(w_generate=0.0))
    with torch.no_grad():
        kd.aligners[0].weight.zero_(), kd.aligners[0].bias.zero_()
        kd.aligners[1].weight.zero_(), kd.aligners[1].bias.zero_()
    t = [torch.tensor([[[5.0, 7.0]]])] * 2  # layer norm -> (-1, 1): MSE of zeros = 1
    assert kd([torch.zeros(1, 1, 2)] * 2, t)["vitkd_mimic"].item() == pytest.approx(1.0, rel=1e-4)


def test_spatial_kl_is_zero_for_the_teacher_itself_and_skips_invisible_joints():
    t = torch.zeros(1, 2, 4, 4)
    t[0, 0, 1, 2] = 0.8
    t[0, 0, 1, 1] = 0.2
    assert spatial_kl(t.clamp(min=1e-6), t).item() == pytest.approx(0.0, abs=1e-4)
    p = torch.full_like(t, 0.5)  # uniform student: KL = log(16) - H(teacher)
    h = -(0.8 * np.log(0.8) + 0.2 * np.log(0.2))
    assert spatial_kl(p, t).item() == pytest.approx(np.log(16) - h, rel=1e-4)


def test_heatmap_agreement_counts_argmax_within_tolerance():
    t = torch.zeros(1, 2, 10, 10)
    t[0, 0, 5, 5] = t[0, 1, 2, 2] = 1.0
    p = torch.zeros(1, 2, 10, 10)
    p[0, 0, 5, 6] = 1.0  # 1 cell off: within 0.1 x 10
    p[0, 1, 8, 8] = 1.0  # far
    assert heatmap_agreement(p, t) == pytest.approx(0.5)


def test_vit_supports_a_non_square_token_grid():
    cfg = ViTPoseConfig(input_size=(128, 96), dim=32, depth=3, heads=2, head_channels=16)
    assert cfg.grid == (16, 12)
    heat, feats = ViTPose(cfg).forward_features(torch.zeros(2, 3, 128, 96))
    assert heat.shape == (2, 17, 32, 24)
    assert [f.shape for f in feats] == [(2, 192, 32)] * 3


def test_vit_config_names_the_bad_field():
    with pytest.raises(ValueError, match="ViTPoseConfig.input_size"):
        ViTPoseConfig(input_size=(100, 96))
    with pytest.raises(ValueError, match="ViTKDConfig.mask_ratio"):
        ViTKDConfig(mask_ratio=1.0)


def test_a_few_vitkd_training_steps_lower_the_loss():
    from edgepose.compression.data.augment import AugmentConfig

    torch.manual_seed(0)
    small = dict(input_size=(64, 64), depth=3, heads=2, head_channels=16)
    teacher = ViTPose(ViTPoseConfig(dim=32, **small))
    student = ViTPose(ViTPoseConfig(dim=16, **small))
    cfg = ViTTrainConfig(steps=40, batch_size=8, lr=3e-3, warmup=5, eval_every=40, augment=AugmentConfig.none(),
                         val_fraction=0.2, threads=1)
    rep = train_vit(student, synthetic_labels(), cfg, teacher=teacher, vitkd=ViTKDConfig(), progress=False)
    assert set(rep.terms) >= {"heatmap_kd", "spatial_kl", "vitkd_mimic", "vitkd_generate"}
    first, last = np.mean(rep.train[:5]), np.mean(rep.train[-5:])
    assert last < 0.8 * first, (first, last)


def test_export_matches_torch_and_the_student_card_reads_it(tmp_path):
    from edgepose.models import load_model
    from edgepose.models._crop import Roi

    model = ViTPose(ViTPoseConfig(input_size=(64, 48), dim=32, depth=3, heads=2, head_channels=16)).eval()
    res = export_heatmap_student(model, tmp_path / "vit.onnx")
    assert res["max_abs_diff"] < 1e-4
    assert res["metadata"]["edgepose.card"] == "student"
    with load_model(tmp_path / "vit.onnx", num_threads=1) as card:
        assert card.input_size == (48, 64)
        est = card.estimate(np.zeros((120, 90, 3), np.uint8), Roi(45, 60, 90, 120))
    assert est.keypoints.shape == (17, 2)


@pytest.mark.slow
def test_tflite_export_matches_torch_and_the_student_card_reads_it(tmp_path):
    pytest.importorskip("litert_torch")
    from edgepose.compression.students.vit import export_heatmap_student_tflite
    from edgepose.models import load_model
    from edgepose.models._crop import Roi

    torch.manual_seed(0)
    model = ViTPose(ViTPoseConfig(input_size=(64, 48), dim=32, depth=2, heads=2, head_channels=16)).eval()
    res = export_heatmap_student_tflite(model, tmp_path / "vit.tflite")
    assert res["max_abs_diff"] < 1e-4
    onnx_res = export_heatmap_student(model, tmp_path / "vit.onnx")
    frame = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    roi = Roi(45, 60, 90, 120)
    with load_model(res["path"], num_threads=1) as a, load_model(onnx_res["path"], num_threads=1) as b:
        np.testing.assert_allclose(a.estimate(frame, roi).keypoints, b.estimate(frame, roi).keypoints, atol=1e-3)
