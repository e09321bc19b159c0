"""Export parity of the temporal models: torch vs the ONNX file the runtime runs."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")


def _randomised(kind):
    from edgepose.compression.temporal.models import TemporalNetConfig, build

    torch.manual_seed(0)
    model = build(kind, TemporalNetConfig(window=16, hidden=24, blocks=1))
    with torch.no_grad():  # the decoder starts at zero (identity); make the test see the net
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("kind", ["smoother", "recovery"])
def test_exported_model_matches_torch_through_the_runtime_backend(kind, tmp_path):
    from edgepose.compression.export.temporal import PARITY_ATOL, example_input, export_onnx
    from edgepose.video._temporal import TemporalModel

    model = _randomised(kind)
    path = tmp_path / f"{kind}.onnx"
    diff = export_onnx(model, path, extra_metadata={"test": True})
    assert diff <= PARITY_ATOL
    rt = TemporalModel(path, kind=kind, default_file="unused.onnx")
    try:
        assert rt.window == 16
        assert float(rt.metadata["edgepose.parity_max_abs"]) <= PARITY_ATOL
        for c in (1, 17, 34):
            x = example_input(model, c, seed=c)
            with torch.no_grad():
                ref = model(x).numpy()
            np.testing.assert_allclose(rt(x.numpy()), ref, atol=PARITY_ATOL)
    finally:
        rt.close()


def test_runtime_refuses_a_model_of_the_other_kind(tmp_path):
    from edgepose.compression.export.temporal import export_onnx
    from edgepose.errors import ModelLoadError
    from edgepose.video._temporal import TemporalModel

    path = tmp_path / "s.onnx"
    export_onnx(_randomised("smoother"), path)
    with pytest.raises(ModelLoadError, match="is a 'smoother' model .* expected 'recovery'"):
        TemporalModel(path, kind="recovery", default_file="unused.onnx")


def test_training_normalisation_matches_the_runtime():
    from edgepose.compression.temporal.windows import batch_channels, batch_scale, interp_matrix
    from edgepose.video._temporal import person_scale, to_channels

    rng = np.random.default_rng(0)
    win = rng.normal(200, 40, size=(3, 32, 17, 2))
    scale = batch_scale(win)
    ch, center = batch_channels(win, scale)
    for i in range(3):
        s = person_scale(win[i])
        c, ce = to_channels(win[i], s)
        assert scale[i] == pytest.approx(s)
        np.testing.assert_allclose(ch[i], c)
        np.testing.assert_allclose(center[i], ce)
    m, mask = interp_matrix(10, 3)  # keyframes at 0, 3, 6, 9 (window ends on one)
    x = np.arange(10, dtype=float) ** 2
    expect = np.interp(np.arange(10), [0, 3, 6, 9], x[[0, 3, 6, 9]])
    np.testing.assert_allclose(m @ x, expect)
    assert mask.nonzero()[0].tolist() == [0, 3, 6, 9]
