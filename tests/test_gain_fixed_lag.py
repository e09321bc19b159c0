"""The learned-gain filter as the causal stage of the triangular fixed-lag One Euro (issue 7, round E)."""

import numpy as np
import pytest

from edgepose.video.tracks import fixed_lag_from_forward, one_euro_track
from edgepose.video.one_euro import FixedLagOneEuro, OneEuroConfig
from tests._fixed_lag_tracks import noisy_track, run_online

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from edgepose.compression.temporal.gain import GainNet, export_gain, triangular_lag, unroll  # noqa: E402
from edgepose.video.gain_filter import LearnedGainFilter  # noqa: E402

BASE = OneEuroConfig(4.0, 0.0, 0.5)
FPS = 30.0


def _net(seed=None):
    net = GainNet().double()
    if seed is not None:  # a trained-looking, non-zero gain
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


class _Scored:
    """FixedLagOneEuro.push with per-frame scores, for run_online."""

    def __init__(self, f, scores):
        self.f, self.scores, self.i = f, scores, 0

    def push(self, x, t, scale):
        s = self.scores[self.i]
        self.i += 1
        return self.f.push(x, t, scale=scale, scores=s)

    def flush(self):
        return self.f.flush()


def test_untrained_gain_is_the_plain_fixed_lag_one_euro(tmp_path):
    path = export_gain(_net(), tmp_path / "g.onnx", config=BASE)
    x, scales = noisy_track(70, seed=2, gaps=(20, 45))
    scores = np.full((70, 17), 0.8)
    plain = run_online(FixedLagOneEuro(BASE, 2, "triangular"), x, FPS, scales)
    learned = run_online(_Scored(FixedLagOneEuro(BASE, 2, "triangular", causal=LearnedGainFilter(path, BASE)), scores),
                         x, FPS, scales)
    np.testing.assert_allclose(learned, plain, atol=1e-9)


def test_online_equals_replay_and_torch_training_graph(tmp_path):
    net = _net(seed=1)
    path = export_gain(net, tmp_path / "g.onnx", config=BASE)
    x, scales = noisy_track(60, seed=4)
    scores = np.random.default_rng(0).uniform(0.2, 0.9, (60, 17))
    online = run_online(_Scored(FixedLagOneEuro(BASE, 2, "triangular", causal=LearnedGainFilter(path, BASE)), scores),
                        x, FPS, scales)
    with LearnedGainFilter(path, BASE) as g:
        fwd = g.filter_track(x, scores, FPS, scales)
    np.testing.assert_allclose(online, fixed_lag_from_forward(x, fwd, FPS, BASE, 2, scales, method="triangular"),
                               atol=1e-9)
    # the torch graph it is trained through: the same causal outputs and interior triangular frames
    t = lambda a: torch.tensor(a)[None]  # noqa: E731
    valid = torch.ones(1, 60, dtype=torch.bool)
    y = unroll(net, t(x), t(scores), valid, t(scales), torch.full((1, 60), 1 / FPS), BASE)
    np.testing.assert_allclose(y[0].detach().numpy(), fwd, atol=1e-4)  # float32 ONNX vs float64 torch
    z, ok = triangular_lag(y, valid, 2)
    assert not ok[0, :2].any() and not ok[0, -2:].any() and ok[0, 2:-2].all()
    np.testing.assert_allclose(z[0, 2:-2].detach().numpy(), online[2:-2], atol=1e-4)


def test_untrained_torch_stage_matches_one_euro_and_refuses_forward_backward():
    x, scales = noisy_track(40, seed=6)
    valid = torch.ones(1, 40, dtype=torch.bool)
    y = unroll(_net(), torch.tensor(x)[None], torch.full((1, 40, 17), 0.5, dtype=torch.float64), valid,
               torch.tensor(scales)[None], torch.full((1, 40), 1 / FPS), BASE)
    np.testing.assert_allclose(y[0].detach().numpy(), one_euro_track(x, FPS, BASE, scales), atol=1e-9)
    with pytest.raises(ValueError, match="method='triangular'"):
        FixedLagOneEuro(BASE, 2, "forward-backward", causal=object())


def test_shipped_fixed_lag_model_loads_and_smooths():
    from edgepose.video.gain_filter import DEFAULT_MODEL, learned_fixed_lag_one_euro

    f = learned_fixed_lag_one_euro()
    assert f.delay == 2 and f.method == "triangular" and f.config == BASE
    x, scales = noisy_track(80, seed=9, gaps=(40,))
    scores = np.full((80, 17), 0.7)
    out = run_online(_Scored(f, scores), x, FPS, scales)
    plain = run_online(FixedLagOneEuro(BASE, 2, "triangular"), x, FPS, scales)
    assert np.isnan(out[40]).all() and np.isfinite(out[:40]).all()
    assert not np.allclose(out[:40], plain[:40])  # the trained gain changes the cut-off
    acc = lambda a: np.abs(np.diff(a[:40], 2, axis=0)).mean()  # noqa: E731
    assert acc(out) < 0.5 * acc(x)
    with pytest.raises(Exception, match="zero-lag model"):
        learned_fixed_lag_one_euro(DEFAULT_MODEL)
