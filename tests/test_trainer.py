"""The one trainer: schedule, data order, resume, DDP through torchrun (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgepose.compression.train import Trainer, TrainerConfig, lr_factor  # noqa: E402
from edgepose.errors import ConfigError  # noqa: E402

from tests import _ddp_worker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_lr_factor_is_the_former_warmup_cosine_formula():
    steps, warm = 50, 5
    for s in range(steps):
        old = (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
        assert lr_factor(s, warmup=warm, total_steps=steps) == old  # bit-identical
    assert lr_factor(10, warmup=0, progress=1.0, floor=0.01) == 0.01
    assert lr_factor(10, warmup=0, progress=0.5) == pytest.approx(0.5)


@pytest.mark.torch
@pytest.mark.parametrize("field,value", [("steps", -1), ("batch_size", 0), ("optimizer", "sgd"),
                                         ("schedule", "step"), ("device", "tpu"), ("lr", -1.0)])
def test_trainer_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"TrainerConfig.{field}"):
        TrainerConfig(**{field: value})


@pytest.mark.torch
def test_the_sampler_repeats_the_former_per_epoch_dataloader_order():
    from torch.utils.data import DataLoader

    from edgepose.compression.train.data import EpochSampler

    ds = _ddp_worker.DS(20)
    for epoch in range(3):
        old = list(DataLoader(range(20), batch_size=20, shuffle=True,
                              generator=torch.Generator().manual_seed(7 + epoch)))[0].tolist()
        s = EpochSampler(ds, num_replicas=1, rank=0, seed=7)
        s.set_epoch(epoch)
        assert list(s) == old


@pytest.mark.torch
def test_checkpoints_resume_to_the_same_weights_as_one_uninterrupted_run(tmp_path):
    def run(out, steps, resume=False, model=None):
        torch.manual_seed(0)
        m = model or _ddp_worker.Loss()
        cfg = TrainerConfig(steps=steps, batch_size=8, lr=1e-2, warmup=1, device="cpu", progress=False,
                            ckpt_every=3, eval_every=3)
        res = Trainer(m, _ddp_worker.DS(), cfg, val_data=_ddp_worker.DS(8), out=out).fit(resume=resume)
        return m, res

    full, res = run(tmp_path / "a", 9)
    assert [c["step"] for c in res.checkpoints] == [3, 6, 9] and res.best["step"] in (3, 6, 9)
    assert (tmp_path / "a" / "loss.png").is_file()
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["steps"] == 9 and s["samples_per_s"] > 0
    run(tmp_path / "b", 9)  # interrupted copy: drop its later checkpoints, resume from step 3
    for p in ("ckpt_000006.pt", "ckpt_000009.pt"):
        (tmp_path / "b" / p).unlink()
    part, res2 = run(tmp_path / "b", 9, resume=True)
    assert res2.steps == 9 and len(res2.history) == 6
    for (k, a), b in zip(full.state_dict().items(), part.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


@pytest.mark.torch
def test_ddp_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path):
    """2 ranks x 4 samples vs 1 process x 8 samples, 3 steps. Tolerance: 1e-5 (float32 gradient
    all-reduce order) on the loss and the weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = str(ROOT / "tests" / "_ddp_worker.py")
    (tmp_path / "ddp").mkdir()
    (tmp_path / "one").mkdir()
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        worker, str(tmp_path / "ddp"), "3"], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    _ddp_worker.main(str(tmp_path / "one"), 3)
    r0, r1 = (torch.load(tmp_path / "ddp" / f"rank{i}.pt") for i in (0, 1))
    one = torch.load(tmp_path / "one" / "rank0.pt")
    assert r0["world"] == r1["world"] == 2 and one["world"] == 1
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # replicas identical
        torch.testing.assert_close(r0["state"][k], one["state"][k], rtol=0, atol=1e-5)
    assert all(len(rl) == 2 for rl in r0["rank_loss"])
    assert r0["loss"] == pytest.approx(one["loss"], abs=1e-5)


@pytest.mark.torch
@pytest.mark.backend
def test_cli_smoke_recipe_with_two_processes_logs_two_ranks(tmp_path, assets):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "edgepose.cli.main", "train", "smoke", "--out", str(out), "--steps", "4",
                        "--nproc", "2", "--train-device", "cpu", "--assets", str(assets)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["world"] == 2 and lines[0]["ranks"] == [0, 1]
    steps = [x for x in lines if "event" not in x]
    assert [x["step"] for x in steps] == [1, 2, 3, 4] and all(len(x["rank_loss"]) == 2 for x in steps)
    assert (out / "ckpt_000004.pt").is_file() and (out / "loss.png").is_file()


@pytest.mark.torch
@pytest.mark.parametrize("patch,named", [
    ({"schedule": {"stepz": 3}}, "schedule.stepz"),
    ({"schedule": {"steps": -2}}, "TrainerConfig.steps"),
    ({"data": {"media": ["x"], "val_fraction": 0.9}}, "data.val_fraction"),
    ({"model": {"width": 0.0}}, "StudentConfig.width"),
    ({"method": "sgd-kd"}, "field method"),
    ({"options": {"w_spatial": 0.1, "bogus": 1}}, "options.bogus"),
    ({"teacher": 3}, "field teacher must be str"),
])
def test_recipe_errors_name_the_field(tmp_path, patch, named):
    import yaml

    from edgepose.compression.train.recipes import RECIPE_DIR, list_recipes, load_recipe

    assert {"smoke", "kd", "feature-kd", "okdhp", "vit", "student-heatmap"} <= set(list_recipes())
    for name in list_recipes():
        load_recipe(name)  # every shipped recipe is valid
    d = yaml.safe_load((RECIPE_DIR / "smoke.yaml").read_text())
    d.update(patch)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match=named):
        load_recipe(p)
