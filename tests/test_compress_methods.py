"""``edgepose compress --method`` and the recipes behind it: validation, the recipe-trained candidates
(export, int8, gate scoring at their own input size), the dkd recipe, and small end-to-end runs (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepose.errors import ConfigError
from tests._synthetic_labels import synthetic_labels


# -- validation (no torch) -----------------------------------------------------------------------------
@pytest.mark.core
def test_a_bad_method_names_the_valid_choices():
    from edgepose.compression.methods import METHODS, check_method

    assert METHODS == ("kd", "feature-kd", "okdhp", "vitkd", "dkd")
    with pytest.raises(ConfigError, match=r"--method 'sgd' is invalid: one of kd, feature-kd, okdhp, vitkd, dkd"):
        check_method("sgd")
    with pytest.raises(ConfigError, match=r"--method dkd needs --detector.*edgepose train dkd --out DIR"):
        check_method("dkd")
    assert check_method("dkd", detector="det.onnx") == "dkd"


@pytest.mark.core
def test_compress_config_checks_the_method():
    from edgepose.compression.pipeline import CompressConfig

    assert CompressConfig(teacher="t.onnx", model="m.onnx", out="o").method == "kd"
    with pytest.raises(ConfigError, match="one of kd, feature-kd"):
        CompressConfig(teacher="t.onnx", model="m.onnx", out="o", method="vit")


@pytest.mark.core
def test_dummy_feeds_give_every_input_of_a_multi_input_graph():
    from types import SimpleNamespace as NS

    from edgepose.compression.latency import dummy_feeds

    f = dummy_feeds([NS(name="image", type="tensor(float)", shape=[1, 3, 128, 128]),
                     NS(name="kernels", type="tensor(float)", shape=["n", 17, 48]),
                     NS(name="gate", type="tensor(float)", shape=[1])])
    assert f["image"].shape == (1, 3, 128, 128) and f["image"].std() > 0
    assert f["kernels"].shape == (1, 17, 48) and not f["kernels"].any() and f["gate"].tolist() == [1.0]


# -- recipes ---------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_every_shipped_recipe_loads_and_the_cheap_ones_build(tmp_path):
    torch = pytest.importorskip("torch")
    from edgepose.compression.train.recipes import build, list_recipes, load_recipe

    names = list_recipes()
    assert {"smoke", "kd", "feature-kd", "okdhp", "vit", "dkd", "dkd-per-frame", "student-heatmap", "student-simcc",
            "student-rle"} <= set(names)
    labels = synthetic_labels(spread=(0.3, 0.7), torso=True, path="mem")
    for name in names:
        rec = load_recipe(name)
        assert rec.method and rec.description, name
        if rec.method in ("student", "okdhp", "vit"):  # kd / feature-kd import the MoveNet ONNX; dkd: two phases
            module, tr, va, save, _ = build(rec, labels, assets=tmp_path)
            batch = next(iter(torch.utils.data.DataLoader(tr, batch_size=2)))
            terms = module(batch)
            assert len(tr) + len(va) == len(labels), name
            assert all(np.isfinite(float(v.detach())) for v in terms.values()), name
            assert sum(p.numel() for p in save.parameters()) > 0
    assert load_recipe("dkd-per-frame").options["per_frame"] is True and not load_recipe("dkd").options["per_frame"]


@pytest.mark.torch
@pytest.mark.parametrize("patch,named", [
    ({"options": {"clip_length": 1}}, "options.clip_length"),
    ({"options": {"w_temporal": 1.0, "bogus": 2}}, "options.bogus"),
    ({"options": {"gaps": [0]}}, "options.gaps"),
    ({"model": {"kernel_size": 2}}, "DKDConfig.kernel_size"),
    ({"model": {"widthz": 2}}, "model.widthz"),
    ({"data": {"media": ["shippable"], "detector": "d.onnx"}}, "data.videos"),
    ({"data": {"media": ["shippable"], "videos": ["temporal"], "detector": None}}, "data.detector"),
])
def test_dkd_recipe_errors_name_the_field(tmp_path, patch, named):
    import yaml

    from edgepose.compression.train.recipes import RECIPE_DIR, load_recipe

    d = yaml.safe_load((RECIPE_DIR / "dkd.yaml").read_text())
    d.update(patch)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match=named):
        load_recipe(p)


# -- recipe-trained candidates: train, export, int8, gate ---------------------------------------------------
@pytest.mark.torch
@pytest.mark.backend
@pytest.mark.parametrize("method,card", [("okdhp", "student"), ("vitkd", "student")])
def test_recipe_methods_make_gated_fp32_and_int8_candidates_at_their_input_size(tmp_path, method, card):
    pytest.importorskip("torch")
    from edgepose.compression import gate
    from edgepose.compression.methods import train_candidates
    from edgepose.compression.pipeline import CompressConfig
    from edgepose.compression.quantize import QuantizeConfig

    labels = synthetic_labels(spread=(0.3, 0.7), torso=True, path="mem")
    tr, va = labels.split(0.2, 0)
    cfg = CompressConfig(teacher="t.onnx", model="m.onnx", out=str(tmp_path), method=method,
                         distill={"steps": 2}, threads=1)
    crops = [labels.image(int(i)) for i in tr]
    cands, artifacts = [], []
    rep = train_candidates(cfg, None, labels, tr, va, [], crops, None, None, QuantizeConfig(num_calibration=8),
                           tmp_path, cands, artifacts, [], False)
    assert [c.name for c in cands] == [f"{method}_fp32", f"{method}_int8"] and all(p.is_file() for p in artifacts)
    m = rep["method"]
    assert m["steps"] == 2 and m["train"]["steps"] == 2 and m["fit_crops"] + m["val_crops"] == len(tr)
    ho = [labels.image(int(i)) for i in va]
    for c in cands:
        assert gate.runtime_card(c.path) == card
        pred = gate.predict_crops(c.path, ho)  # 64 px crops through a 128 px student's card
        assert pred.shape == (len(va), 17, 3) and np.isfinite(pred).all() and (pred[..., :2] >= -0.5).all()
        assert 0.0 <= gate.score_heldout(c.path, ho, labels.keypoints[va]) <= 100.0
    from edgepose.compression.latency import interleaved_latency

    lat = interleaved_latency({c.name: c.path for c in cands}, rounds=2, per_round=1, warmup=1, threads=1)
    assert all(r.p50 > 0 for r in lat.values())


@pytest.mark.torch
@pytest.mark.backend
def test_a_dkd_file_is_calibrated_timed_and_gated_with_all_its_inputs(tmp_path):
    pytest.importorskip("torch")
    import onnx

    from edgepose.compression import gate
    from edgepose.compression.latency import interleaved_latency
    from edgepose.compression.methods import card_inputs
    from edgepose.compression.quantize import QuantizeConfig, quantize
    from edgepose.compression.students.dkd_model import DKDConfig, DKDPose, export_dkd

    fp32, int8 = tmp_path / "dkd_fp32.onnx", tmp_path / "dkd_int8.onnx"
    export_dkd(DKDPose(DKDConfig(input_size=64)).eval(), fp32)
    crops = [np.random.default_rng(i).integers(0, 255, (96, 96, 3), np.uint8) for i in range(3)]
    feeds = card_inputs(str(fp32), crops)
    assert len(feeds) == 6 and {len(f) for f in feeds} == {3} and [f["gate"][0] for f in feeds[:2]] == [0.0, 1.0]
    quantize(fp32, int8, QuantizeConfig(fold_input=False, num_calibration=6), calibration=feeds)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(int8)).graph.node)
    for p in (fp32, int8):
        assert gate.runtime_card(str(p)) == "dkd" and gate.predict_crops(str(p), crops).shape == (3, 17, 3)
    lat = interleaved_latency({"a": str(fp32), "b": str(int8)}, rounds=2, per_round=1, warmup=1, threads=1)
    assert lat["a"].p50 > 0 and lat["b"].p50 > 0


@pytest.mark.backend
def test_the_card_path_of_the_gate_agrees_with_the_movenet_fast_path(assets):
    from edgepose.compression import gate
    from tests.conftest import read_rgb

    img = read_rgb(assets / "data" / "train_extra" / "gh_dusty-nv_jetson-inference" / "data_images_humans_0.jpg")
    import cv2

    crops = [cv2.resize(img, (192, 192)), cv2.resize(img[::-1].copy(), (192, 192))]
    p = str(assets / "models" / "movenet" / "movenet_lightning_fp32.onnx")
    a, b = gate.predict_crops(p, crops), gate.predict_with_card(p, crops)
    assert np.abs(a - b).max() < 1e-4


# -- end to end (slow) --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("method", ["feature-kd", "okdhp", "vitkd", "dkd"])
def test_compress_method_end_to_end(tmp_path, capsys, method):
    """4 training steps of each method through ``edgepose compress``: its candidates are scored, timed and
    refused by the gate (4 steps from scratch are far below the floor); a passing model is recommended."""
    pytest.importorskip("torch_pruning")
    from edgepose.cli.main import main
    from tests.conftest import ASSETS, MODELS

    m, x = MODELS / "movenet", ASSETS / "data" / "train_extra"
    data = ["--data", str(x / "gh_dusty-nv_jetson-inference")]
    if method == "dkd":  # clips need training videos and a detector
        data += [a for v in ("cam02", "cam03", "cam04") for a in
                 ("--data", str(x / "pypi_pose2sim" / f"Demo_SinglePerson_{v}.mp4"))]
        data += ["--detector", str(m / "movenet_multipose_lightning_fp32.onnx")]
    out = tmp_path / "out"
    rc = main(["compress", "--teacher", str(m / "movenet_thunder_fp32.onnx"), "--model",
               str(m / "movenet_lightning_fp32.onnx"), "--out", str(out), "--steps", "4", "--method", method,
               "--ratio", "0.3", "--importance", "magnitude", *data, "--cache-dir", str(tmp_path / "cache"),
               "--no-eval", "--no-int8-mixed", "--no-tflite", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    by = {c["name"]: c for c in rep["candidates"]}
    name = "student" if method == "feature-kd" else method
    assert {f"{name}_fp32", f"{name}_int8"} <= set(by) and rep["config"]["method"] == method
    assert all("heldout_teacher" in c["scores"] and c["host_ms"] > 0 for c in by.values())
    assert by[rep["recommended_name"]]["passes_floor"]
    assert (rep["distill"]["method"] if method == "feature-kd" else rep["method"]["method"]) == method
    assert f"{method}" in (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.torch
def test_train_a_tiny_dkd_recipe_runs_both_phases(tmp_path, assets):
    import subprocess
    import sys

    import yaml

    from edgepose.compression.train.recipes import RECIPE_DIR

    d = yaml.safe_load((RECIPE_DIR / "dkd.yaml").read_text())
    d["data"].update(media=["data/train_extra/gh_dusty-nv_jetson-inference"], detector=d["data"]["detector"],
                     videos=["data/train_extra/pypi_pose2sim/Demo_SinglePerson_cam04.mp4"], cache=str(tmp_path / "c"))
    d["options"].update(segment=4, max_segments=2, gaps=[1])
    d["schedule"].update(batch_size=2, eval_every=0, ckpt_every=0)
    rec = tmp_path / "tiny-dkd.yaml"
    rec.write_text(yaml.safe_dump(d))
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "edgepose.cli.main", "train", str(rec), "--out", str(out), "--steps", "2",
                        "--train-device", "cpu", "--assets", str(assets)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    steps = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"event"' not in x]
    assert [s["step"] for s in steps] == [1, 2] and "temporal" in steps[-1]
    assert (out / "pretrain.pt").is_file() and (out / "model.pt").is_file()
