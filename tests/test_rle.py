"""RLE: the residual log-likelihood loss on hand-made tensors, the flow, the head, training, export."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepose.compression.students import (RealNVP, RLEHead, RLEObjective, StudentConfig,  # noqa: E402
                                           StudentNet, export_onnx_student, rle_loss)
from edgepose.compression.students.rle import laplace_log_normaliser  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on the shared 2-core machines two threads run ~10x slower, not faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _std_normal_logp(e):
    return -0.5 * (e[0] ** 2 + e[1] ** 2) - math.log(2 * math.pi)


def test_rle_loss_with_an_identity_flow_matches_the_hand_computed_likelihood():
    flow = RealNVP(identity_init=True)
    coords = torch.tensor([[[0.5, 0.5]]])
    target = torch.tensor([[[0.6, 0.3]]])
    sigma = torch.tensor([[[0.1, 0.2]]])
    e = (-1.0, 1.0)  # (0.5 - 0.6) / 0.1, (0.5 - 0.3) / 0.2
    expected = math.log(0.1) + math.log(0.2) - _std_normal_logp(e) + 2 * (math.log(2.0) + 1.0)
    got = rle_loss(coords, sigma, target, torch.ones(1, 1), flow, normalise=False)
    assert float(got) == pytest.approx(expected, abs=1e-5)
    direct = rle_loss(coords, sigma, target, torch.ones(1, 1), flow, residual=False)
    assert float(direct) == pytest.approx(math.log(0.1) + math.log(0.2) - _std_normal_logp(e), abs=1e-5)


def test_rle_loss_averages_over_weighted_keypoints_only():
    flow = RealNVP(identity_init=True)
    coords = torch.tensor([[[0.5, 0.5], [0.0, 0.0]]])
    target = torch.tensor([[[0.5, 0.5], [0.9, 0.9]]])  # second keypoint is wildly off but unweighted
    sigma = torch.full((1, 2, 2), 0.1)
    got = rle_loss(coords, sigma, target, torch.tensor([[1.0, 0.0]]), flow, normalise=False)
    expected = 2 * math.log(0.1) - _std_normal_logp((0.0, 0.0)) + 2 * math.log(2.0)
    assert float(got) == pytest.approx(expected, abs=1e-5)


def test_rle_loss_is_lowest_when_sigma_matches_the_error():
    flow = RealNVP(identity_init=True)
    coords, target = torch.zeros(1, 1, 2), torch.full((1, 1, 2), 0.05)
    losses = {s: float(rle_loss(coords, torch.full((1, 1, 2), s), target, torch.ones(1, 1), flow, normalise=False))
              for s in (0.01, 0.03, 0.05, 0.2)}
    assert min(losses, key=losses.get) in (0.03, 0.05)
    assert losses[0.01] > losses[0.05] < losses[0.2]


def test_the_normaliser_of_laplace_times_a_standard_normal_flow_matches_its_closed_form():
    # E_{z ~ N(0,1)}[exp(-|z|)] = 2 e^(1/2) Phi(-1); s = (0.5 x that)^2 for the 2-D product
    e_abs = 2 * math.exp(0.5) * 0.5 * math.erfc(1 / math.sqrt(2))
    log_s = 2 * math.log(0.5 * e_abs)  # = -2.682
    g = torch.Generator().manual_seed(0)
    est = laplace_log_normaliser(RealNVP(identity_init=True), 50_000, g)
    assert float(est) == pytest.approx(log_s, abs=0.02)
    flow = RealNVP(identity_init=True)
    with_s = rle_loss(torch.zeros(1, 1, 2), torch.full((1, 1, 2), 0.1), torch.zeros(1, 1, 2), torch.ones(1, 1), flow,
                      samples=50_000)
    without = rle_loss(torch.zeros(1, 1, 2), torch.full((1, 1, 2), 0.1), torch.zeros(1, 1, 2), torch.ones(1, 1), flow,
                       normalise=False)
    assert float(with_s - without) == pytest.approx(log_s, abs=0.02)


def test_realnvp_forward_map_inverts_inverse():
    torch.manual_seed(0)
    flow = RealNVP(layers=4, hidden=16)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        z = torch.randn(50, 2)
        back, _ = flow.inverse(flow.forward_map(z))
    torch.testing.assert_close(back, z, rtol=1e-4, atol=1e-5)


def test_realnvp_is_a_normalised_density_even_away_from_identity():
    torch.manual_seed(0)
    flow = RealNVP(layers=4, hidden=16)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    g = torch.linspace(-9, 9, 361)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    with torch.no_grad():
        mass = float(flow.log_prob(pts).exp().sum()) * float(g[1] - g[0]) ** 2
    assert mass == pytest.approx(1.0, abs=0.02)


def test_rle_head_starts_at_the_crop_centre_with_small_sigma():
    head = RLEHead(8, 3).eval()
    torch.nn.init.zeros_(head.logits.weight)  # uniform softmax -> the expected location is the centre
    torch.nn.init.zeros_(head.logits.bias)
    coords, sigma = head(torch.randn(2, 8, 6, 4))
    np.testing.assert_allclose(coords.detach().numpy(), 0.5, atol=1e-6)
    assert coords.shape == sigma.shape == (2, 3, 2)
    assert 0.0 < float(sigma.min()) and float(sigma.max()) < 0.2


def _batch(n=8, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(n, 17, 3, generator=g) * 0.6 + 0.2
    kp[..., 2] = 0.9
    img = torch.zeros(n, 3, size, size)
    for i in range(n):  # a bright dot at every keypoint: learnable in a few steps
        for y, x in (kp[i, :, :2] * size).long().tolist():
            img[i, :, max(0, y - 2):y + 2, max(0, x - 2):x + 2] = 1.0
    return {"image": img, "keypoints": kp}


def test_a_few_rle_training_steps_lower_the_loss():
    torch.manual_seed(0)
    obj = RLEObjective(StudentNet(StudentConfig(input_size=64, head="rle", width=0.5)))
    opt = torch.optim.Adam(obj.parameters(), lr=3e-3)
    batch = _batch()
    losses = []
    for _ in range(25):
        loss = obj(batch)["rle"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < losses[0] - 0.3


def test_rle_student_exports_to_onnx_with_parity_and_the_runtime_reports_sigma(tmp_path, pose_jpg):
    pytest.importorskip("onnxscript")
    from edgepose.models import load_model
    from edgepose.models._crop import Roi

    torch.manual_seed(0)
    net = StudentNet(StudentConfig(input_size=64, head="rle", width=0.5)).eval()
    res = export_onnx_student(net, tmp_path / "rle.onnx", provenance={"test": True})
    assert res.max_abs < 1e-4 and res.max_px < 0.01
    with load_model(str(tmp_path / "rle.onnx")) as model:
        h, w = pose_jpg.shape[:2]
        roi = Roi.from_box(0, 0, w, h)
        est = model.estimate(pose_jpg, roi)
    assert est.keypoints.shape == (17, 2) and est.sigma is not None and est.sigma.shape == (17,)
    assert np.all(est.sigma > 0)
    np.testing.assert_allclose(est.scores, np.clip(1 - est.sigma / roi.width, 0, 1), atol=1e-3)
