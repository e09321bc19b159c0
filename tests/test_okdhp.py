"""OKDHP: pixel-wise KL on hand-made maps, the FAU, unbalanced branches, training, branch export."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepose.compression.distill.okdhp import (OKDHP, FeatureAggregationUnit, OKDHPConfig,  # noqa: E402
                                                pixelwise_kl)
from edgepose.compression.students import StudentConfig, count_parameters  # noqa: E402

pytestmark = pytest.mark.torch
SMALL = StudentConfig(input_size=64, width=0.5)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on the shared 2-core machines two threads run ~10x slower, not faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_pixelwise_kl_is_zero_for_identical_maps_and_log_cells_against_a_uniform_student():
    t = torch.randn(2, 3, 4, 5)
    assert float(pixelwise_kl(t, t)) == pytest.approx(0.0, abs=1e-6)
    point = torch.full((1, 1, 4, 5), -1e4)
    point[0, 0, 2, 3] = 0.0  # teacher: all mass on one cell
    assert float(pixelwise_kl(torch.zeros(1, 1, 4, 5), point)) == pytest.approx(math.log(20), rel=1e-6)


def test_pixelwise_kl_temperature_matches_the_hand_computed_value():
    teacher = torch.tensor([[[[math.log(3.0), 0.0]]]])  # softmax -> (0.75, 0.25) at T = 1
    student = torch.zeros(1, 1, 1, 2)  # (0.5, 0.5)
    kl1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(pixelwise_kl(student, teacher)) == pytest.approx(kl1, rel=1e-6)
    p = math.sqrt(3.0) / (math.sqrt(3.0) + 1.0)  # T = 2: softmax(log(3) / 2, 0)
    kl2 = 4.0 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert float(pixelwise_kl(student, teacher, 2.0)) == pytest.approx(kl2, rel=1e-6)


def test_fau_weights_are_a_softmax_across_branches_starting_uniform():
    fau = FeatureAggregationUnit(8, 3, 17)
    w = fau(torch.randn(2, 8, 5, 5))
    assert w.shape == (2, 3, 17)
    np.testing.assert_allclose(w.sum(1).detach().numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w.detach().numpy(), 1 / 3, rtol=1e-6)  # zero-initialised FC
    kernels = [c[0].kernel_size for c in fau.convs]
    assert kernels == [(3, 3), (5, 5), (7, 7)]


def test_ensemble_of_identical_branches_equals_each_branch():
    torch.manual_seed(0)
    ok = OKDHP(SMALL, OKDHPConfig(branches=((1.0, 1.0), (1.0, 1.0)))).eval()
    ok.branches[1].load_state_dict(ok.branches[0].state_dict())
    outs, ens, w = ok.predict(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(ens, outs[0], rtol=1e-5, atol=1e-5)


def test_unbalanced_branches_have_different_sizes_and_export_exactly_as_a_plain_student():
    torch.manual_seed(0)
    ok = OKDHP(SMALL, OKDHPConfig(branches=((1.0, 1.0), (0.5, 0.5)))).eval()
    sizes = [count_parameters(b) for b in ok.branches]
    assert sizes[1] < sizes[0] / 2
    x = torch.randn(2, 3, 64, 64)
    outs, _, _ = ok.predict(x)
    for i in range(2):
        student = ok.branch_student(i)
        assert student.cfg.branch_width == (1.0, 0.5)[i]
        torch.testing.assert_close(student(x), outs[i])
        assert count_parameters(student) < count_parameters(ok)
    with pytest.raises(ValueError, match="branch index"):
        ok.branch_student(2)


def test_okdhp_config_and_head_are_validated():
    with pytest.raises(ValueError, match="OKDHPConfig.branches"):
        OKDHPConfig(branches=((1.0, 1.0),))
    with pytest.raises(ValueError, match="OKDHPConfig.temperature"):
        OKDHPConfig(temperature=0.0)
    with pytest.raises(ValueError, match="heatmap"):
        OKDHP(StudentConfig(input_size=64, head="rle"))


def _batch(n=6, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(n, 17, 2, generator=g) * 0.6 + 0.2
    img = torch.zeros(n, 3, size, size)
    hm = size // 4
    yy, xx = torch.meshgrid(torch.arange(hm) + 0.5, torch.arange(hm) + 0.5, indexing="ij")
    maps = torch.zeros(n, 18, hm, hm)
    for i in range(n):
        for k, (y, x) in enumerate(kp[i].tolist()):
            img[i, :, int(y * size) - 2:int(y * size) + 2, int(x * size) - 2:int(x * size) + 2] = 1.0
            maps[i, k] = torch.exp(-((yy - y * hm) ** 2 + (xx - x * hm) ** 2) / 2.0)
    return {"image": img, "maps": maps}


def test_a_few_okdhp_steps_lower_every_loss_term_and_the_best_branch_is_picked_on_validation():
    torch.manual_seed(0)
    ok = OKDHP(SMALL, OKDHPConfig(branches=((1.0, 1.0), (0.5, 1.0)), w_spatial=0.1))
    opt = torch.optim.Adam(ok.parameters(), lr=3e-3)
    batch = _batch()
    first = None
    for _ in range(15):
        terms = ok(batch)
        assert set(terms) == {"kd_heatmap_branches", "kd_spatial_branches", "kd_heatmap_ensemble",
                              "kd_spatial_ensemble", "okd_kl"}
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or {k: float(v) for k, v in terms.items()}
    last = {k: float(v) for k, v in ok(batch).items()}
    assert sum(last.values()) < 0.8 * sum(first.values())
    assert last["kd_heatmap_ensemble"] < first["kd_heatmap_ensemble"]
    student, best, losses = ok.best_student([batch])
    assert best == int(np.argmin(losses)) and len(losses) == 2
    assert not student.training
