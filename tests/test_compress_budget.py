"""Budget search: the least-pruned candidate that fits, and a clear error when none can."""

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
pytest.importorskip("onnxruntime")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edgepose.compression.budget import BudgetConfig, BudgetError, search_budget  # noqa: E402
from edgepose.errors import ConfigError  # noqa: E402


class Tiny(nn.Module):
    """Residual + depthwise + four MoveNet-shaped heads (kept out of pruning)."""

    input_size = (32, 32)
    source_sha256 = "tiny"

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1)
        self.dw = nn.Conv2d(32, 32, 3, 1, 1, groups=32)
        self.pw = nn.Conv2d(32, 32, 1)
        self.mid = nn.Conv2d(32, 64, 3, 2, 1)
        self.fuse = nn.Conv2d(64, 32, 1)
        self.heads = nn.ModuleList([nn.Conv2d(32, c, 1) for c in (17, 1, 34, 34)])

    def forward(self, x):
        a = F.relu6(self.stem(x))
        a = a + self.pw(F.relu6(self.dw(a)))
        f = F.relu(self.fuse(F.relu6(self.mid(a))))
        heat, ctr, reg, off = (h(f) for h in self.heads)
        return torch.sigmoid(heat), torch.sigmoid(ctr), reg, off

    def head_convs(self):
        return list(self.heads)


def _ts_export(model, path):
    """TorchScript export: a fraction of a second for a toy (the dynamo exporter takes seconds)."""
    torch.onnx.export(model.eval(), (torch.randn(1, 3, 32, 32),), path, dynamo=False)
    return path


def _fake_measure(scale_ms_per_mmac):
    """Latency proportional to file size (a proxy for the kept channels), labelled measured."""
    import os

    def measure(paths):
        return {n: (os.path.getsize(p) / 1e3 * scale_ms_per_mmac,) * 2 + (1.0,) for n, p in paths.items()}, "measured"
    return measure


def test_the_least_pruned_candidate_that_fits_is_chosen(tmp_path):
    meas = _fake_measure(1.0)
    cfg = BudgetConfig(budget_ms=1e9, ratios=(0.0, 0.25, 0.5))
    res = search_budget(Tiny(), cfg=cfg, workdir=tmp_path, measure=meas, export=_ts_export)
    assert [c.ratio for c in res.candidates] == [0.0, 0.25, 0.5]
    assert res.chosen.ratio == 0.0 and all(c.fits for c in res.candidates)
    lat = [c.latency_ms for c in res.candidates]
    assert lat[0] > lat[1] > lat[2]  # pruning removes channels
    mid = (lat[1] + lat[2]) / 2  # only the most pruned candidate fits
    res = search_budget(Tiny(), cfg=BudgetConfig(budget_ms=mid, ratios=(0.0, 0.25, 0.5)), workdir=tmp_path,
                        measure=meas, export=_ts_export)
    assert res.chosen.ratio == 0.5 and [c.fits for c in res.candidates] == [False, False, True]
    assert "chosen" in res.to_markdown()
    # issue 20: every latency row names the host it was timed on
    assert all(c.cpu_model and isinstance(c.isa_flags, list) for c in res.candidates)
    assert f"Host: {res.candidates[0].cpu_model}" in res.to_markdown()


def test_an_impossible_budget_is_an_error_naming_the_best_reachable_latency(tmp_path):
    """Real ORT timing of the candidates; a 1 microsecond budget cannot be met."""
    cfg = BudgetConfig(budget_ms=0.001, ratios=(0.0, 0.5), rounds=2, per_round=2, threads=1)
    with pytest.raises(BudgetError) as ei:
        search_budget(Tiny(), cfg=cfg, workdir=tmp_path, export=_ts_export)
    e = ei.value
    assert isinstance(e, ConfigError)
    msg = str(e)
    assert "cannot be met" in msg and "best reachable latency" in msg
    assert f"{e.best_ms:.1f} ms" in msg and e.best_ms > 0.001 and e.best_ratio in (0.0, 0.5)
    assert "budget of 0.001 ms on host" in msg  # names the budget and where it was measured


def test_a_device_profile_gives_the_budget_from_its_frame_rate(tmp_path):
    """rpi4 targets 15 fps: 66.7 ms per frame; budget_fraction takes a share of it."""
    cfg = BudgetConfig(budget_fraction=0.5, ratios=(0.0,))
    res = search_budget(Tiny(), profile="rpi4", cfg=cfg, workdir=tmp_path, measure=_fake_measure(1e-3),
                        export=_ts_export)
    assert res.device == "rpi4" and res.budget_ms == pytest.approx(1000 / 15 * 0.5)


def test_no_budget_and_no_device_is_a_config_error():
    with pytest.raises(ConfigError, match="needs a latency budget"):
        search_budget(Tiny(), cfg=BudgetConfig(ratios=(0.0,)))


@pytest.mark.parametrize("kw", [{"budget_ms": 0}, {"budget_fraction": 1.5}, {"ratios": (0.5, 0.1)}, {"ratios": ()}])
def test_bad_budget_options_are_refused(kw):
    with pytest.raises(ValueError):
        BudgetConfig(**kw)


def test_the_cli_exposes_the_budget_options():
    from edgepose.cli.main import build_parser

    a = build_parser().parse_args(["compress", "--teacher", "t", "--model", "m", "--out", "o", "--device", "rpi4",
                                   "--budget-ms", "40", "--budget-fraction", "0.5"])
    assert a.budget_ms == 40 and a.budget_fraction == 0.5 and a.device == "rpi4"


@pytest.mark.slow
def test_an_impossible_budget_is_said_plainly_and_the_fastest_model_meeting_the_floor_is_recommended(tmp_path,
                                                                                                     capsys):
    """Real Lightning, every budget candidate exported and timed; no ratio reaches 1 microsecond, so no student is
    trained, and the report recommends the fastest candidate that meets the floor (gate: held-out teacher crops)."""
    import json

    from edgepose.cli.main import main
    from tests.conftest import ASSETS, MODELS

    m = MODELS / "movenet"
    media = ASSETS / "data" / "train_extra" / "gh_dusty-nv_jetson-inference"  # MIT, training material
    out = tmp_path / "out"
    rc = main(["compress", "--teacher", str(m / "movenet_thunder_fp32.onnx"), "--model",
               str(m / "movenet_lightning_fp32.onnx"), "--out", str(out), "--budget-ms", "0.001",
               "--data", str(media), "--cache-dir", str(tmp_path / "cache"), "--no-eval", "--no-int8-mixed",
               "--no-tflite", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert "cannot be met" in rep["student_skipped"] and "best reachable latency" in rep["student_skipped"]
    assert not (out / "prune_plan.json").exists()
    sel = rep["selection"]
    assert sel["within_budget"] is False and "No candidate meets both the floor and the 0.001 ms budget" in sel["reason"]
    chosen = next(c for c in rep["candidates"] if c["name"] == sel["name"])
    assert chosen["passes_floor"] and rep["recommended"] == chosen["path"]
    passing = [c for c in rep["candidates"] if c["passes_floor"]]
    assert chosen["host_ms"] == min(c["host_ms"] for c in passing)
    assert "No candidate meets both" in (out / "report.md").read_text()
