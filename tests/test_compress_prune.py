"""Pruning on Torch-Pruning's DepGraph: exactness, multiples of 8, heads intact, plan round trip."""

import json

import numpy as np
import pytest

from tests.conftest import MODELS

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edgepose.compression.prune import (PruneConfig, apply_plan, keypoint_discs, load_plan, prune,  # noqa: E402
                                        save_plan)


class Toy(nn.Module):
    """Residual + concat + depthwise + upsample, four MoveNet-shaped heads at stride 4."""

    input_size = (32, 32)
    source_sha256 = "toy"

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1)
        self.dw = nn.Conv2d(32, 32, 3, 1, 1, groups=32)
        self.pw = nn.Conv2d(32, 32, 1)  # residual with stem
        self.down = nn.Conv2d(32, 48, 3, 2, 1)
        self.branch = nn.Conv2d(48, 24, 1)
        self.up = nn.Conv2d(48, 24, 1)
        self.fuse = nn.Conv2d(48, 32, 1)  # reads concat(branch, up)
        self.heads = nn.ModuleList([nn.Conv2d(32, c, 1) for c in (17, 1, 34, 34)])

    def forward(self, x):
        a = F.relu6(self.stem(x))
        a = a + self.pw(F.relu6(self.dw(a)))
        b = F.relu6(self.down(a))
        c = torch.cat([self.branch(b), self.up(b)], dim=1)
        f = F.relu(self.fuse(c))
        heat, ctr, reg, off = (h(f) for h in self.heads)
        return torch.sigmoid(heat), torch.sigmoid(ctr), reg, off

    def head_convs(self):
        return list(self.heads)


def _x(n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _batches():
    g = torch.Generator().manual_seed(2)
    kps = torch.rand(2, 17, 3, generator=g)
    maps = torch.rand(2, 18, 8, 8, generator=g)
    return [{"image": _x(), "keypoints": kps, "maps": maps}]


def test_pruning_at_ratio_zero_keeps_every_shape_and_the_output_exactly():
    net = Toy().eval()
    res = prune(net, PruneConfig(ratio=0.0))
    assert [p.shape for p in res.model.parameters()] == [p.shape for p in net.parameters()]
    with torch.no_grad():
        for a, b in zip(res.model(_x()), net(_x())):
            assert torch.equal(a, b)
    assert res.macs[0] == res.macs[1] and res.guard_max_diff == 0.0


@pytest.mark.parametrize("importance", ["magnitude", "taylor", "content"])
def test_pruning_keeps_multiples_of_8_heads_intact_and_passes_the_exactness_guard(importance):
    net = Toy().eval()
    res = prune(net, PruneConfig(ratio=0.5, importance=importance), batches=_batches(),
                guard_inputs=[_x()])
    m = res.model
    assert m.stem.out_channels == 16 and m.down.out_channels % 8 == 0 and m.fuse.out_channels == 16
    assert m.branch.out_channels % 8 == 0 and m.up.out_channels % 8 == 0
    assert [h.out_channels for h in m.heads] == [17, 1, 34, 34]
    assert m.dw.groups == m.dw.out_channels == m.pw.out_channels  # depthwise follows its group
    assert res.macs[1] < 0.5 * res.macs[0]
    assert res.guard_max_diff < 1e-5
    assert all(p.grad is None for p in m.parameters())


def test_importance_criteria_choose_different_channels():
    net = Toy().eval()
    plans = {k: prune(net, PruneConfig(ratio=0.5, importance=k), batches=_batches()).plan
             for k in ("magnitude", "content")}
    assert plans["magnitude"]["groups"] != plans["content"]["groups"]


def test_a_json_plan_reapplied_to_the_unpruned_model_gives_the_same_model(tmp_path):
    net = Toy().eval()
    res = prune(net, PruneConfig(ratio=0.5, importance="content"), batches=_batches())
    path = save_plan(res.plan, tmp_path / "plan.json")
    again = apply_plan(net, load_plan(path))
    assert json.loads(path.read_text())["kept"]["stem"] == 16
    for (na, a), (nb, b) in zip(res.model.state_dict().items(), again.state_dict().items()):
        assert na == nb and torch.equal(a, b)


def test_a_plan_for_another_model_is_refused():
    net = Toy().eval()
    plan = prune(net, PruneConfig(ratio=0.5)).plan
    net.source_sha256 = "other"
    with pytest.raises(ValueError, match="the plan was made for model sha256"):
        apply_plan(net, plan)


def test_target_macs_finds_a_ratio_near_the_target():
    net = Toy().eval()
    res = prune(net, PruneConfig(target_macs=0.5))
    assert 0.35 <= res.macs[1] / res.macs[0] <= 0.55


def test_bad_configs_name_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"importance='l1' is not one of magnitude, taylor, content"):
        PruneConfig(importance="l1")
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\), got 1.5"):
        PruneConfig(ratio=1.5)
    with pytest.raises(ValueError, match="target_macs is a fraction"):
        PruneConfig(target_macs=50)


def test_data_driven_importance_without_batches_says_what_to_pass():
    with pytest.raises(ValueError, match="needs teacher-labelled batches"):
        prune(Toy().eval(), PruneConfig(importance="taylor"))


def test_content_discs_peak_on_the_keypoints():
    kps = torch.tensor([[[0.25, 0.75, 1.0]] * 17])
    maps = torch.zeros(1, 18, 8, 8)
    maps[0, 17, 4, 4] = 1.0
    d, c = keypoint_discs(kps, maps, (8, 8), sigma=1.0)
    assert np.unravel_index(int(d[0, 0].argmax()), (8, 8)) in {(1, 5), (1, 6), (2, 5), (2, 6)}
    assert np.unravel_index(int(c[0, 0].argmax()), (8, 8)) == (4, 4)


def test_rounding_to_8_never_prunes_more_than_asked():
    res = prune(Toy().eval(), PruneConfig(ratio=0.1))
    m = res.model
    assert (m.stem.out_channels, m.branch.out_channels, m.down.out_channels) == (32, 24, 48)


def test_the_exactness_guard_catches_channels_that_were_not_zeroed():
    from edgepose.compression.prune import exactness_guard

    net = Toy().eval()
    res = prune(net, PruneConfig(ratio=0.5))
    with pytest.raises(RuntimeError, match="exactness guard failed"):
        exactness_guard(res.model, net, [], [_x()], 1e-4)


def test_movenet_lightning_prunes_and_stays_exact():
    from edgepose.compression.importer import import_movenet

    net = import_movenet(MODELS / "movenet" / "movenet_lightning_fp32.onnx")
    res = prune(net, PruneConfig(ratio=0.3))
    assert 0.45 < res.macs[1] / res.macs[0] < 0.7
    assert res.guard_max_diff < 1e-4
    kept = [v for k, v in res.plan["kept"].items()]
    assert all(v % 8 == 0 or v in (1, 3, 17, 34) for v in kept)
