"""edgepose bench: suite validation, a small real run and its JSON schema, emulated labels,
A/B interleaving, the accuracy gate, the video case and the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgepose.bench.abtest import ratio_summary
from edgepose.bench.report import pareto_front, write_report
from edgepose.bench.runner import BenchOptions, latency_stats, run_suite
from edgepose.bench.suite import expand, load_suite
from edgepose.errors import ConfigError, ModelLoadError

pytestmark = pytest.mark.backend

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "benchmarks" / "smoke.yaml"
FAST = dict(progress=False, video=False)

#: The keys every case row carries (benchmarks/README.md, "Result JSON").
ROW_KEYS = {
    "id", "name", "model", "model_path", "model_sha256", "model_size_bytes", "card", "backend", "providers",
    "threads", "host_threads", "target_threads", "precision", "model_precision", "profile", "kind", "warmup",
    "runs", "init_ms", "latency_ms", "samples_ms", "peak_rss_mb", "rss_delta_mb", "macs", "model_bytes_moved",
    "gflops_achieved", "host_peak_gflops", "fraction_of_host_peak", "emulation", "host_measured", "reference",
    "accuracy", "versions", "status"}
LAT_KEYS = {"p50", "p90", "p99", "mean", "std", "min", "max", "n"}


def write_suite(tmp_path, text: str) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def smoke_doc():
    """One real run of the smoke suite (Lightning int8, 1 thread, 8 runs), measured."""
    return run_suite(load_suite(SMOKE), BenchOptions(**FAST))


def test_a_small_real_run_writes_the_documented_json_schema(smoke_doc, tmp_path):
    doc = smoke_doc
    assert doc["schema"] == "edgepose.bench/1"
    assert doc["profile"] == {"name": "host", "kind": "measured", "description": "this machine"}
    assert {"hostname", "host", "load_avg_1m_start", "load_avg_1m_end", "seconds"} <= set(doc["machine"])
    assert {"numpy", "onnxruntime", "ai-edge-litert", "edgepose"} <= set(doc["versions"])
    (row,) = doc["cases"]
    assert set(row) == ROW_KEYS
    assert row["id"] == "movenet-lightning-int8/litert/t1" and row["kind"] == "measured"
    assert set(row["latency_ms"]) == LAT_KEYS and row["latency_ms"]["n"] == 8 == len(row["samples_ms"])
    lat = row["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert row["model_sha256"] == "cd7cc22fa946e5d146a7b98d496853e1923e22828d3972d579973f27f91bb105"
    assert row["macs"] == 270_549_504 and row["precision"] == "int8"
    assert row["gflops_achieved"] == pytest.approx(2 * row["macs"] / lat["p50"] / 1e6)
    assert 0 < row["fraction_of_host_peak"] < 1.5
    assert row["peak_rss_mb"] > 0 and row["init_ms"] > 0
    assert row["emulation"] is None and row["accuracy"] is None and row["status"] == "ok"
    # the reference in smoke.yaml is for rpi4 only: nothing to compare on the host
    assert row["reference"] is None
    paths = write_report(doc, tmp_path)
    back = json.loads(Path(paths["json"]).read_text())
    assert back["cases"][0]["latency_ms"] == pytest.approx(lat)
    assert Path(paths["cdf"]).stat().st_size > 1000
    md = Path(paths["markdown"]).read_text()
    assert "| movenet-lightning-int8/litert/t1 | measured | litert | 1 | int8 |" in md


def test_an_emulated_run_labels_every_figure_and_keeps_the_host_measurement():
    doc = run_suite(load_suite(SMOKE), BenchOptions(device="rpi4", runs=4, **FAST))
    (row,) = doc["cases"]
    assert doc["profile"]["kind"] == row["kind"] == "emulated" and row["profile"] == "rpi4"
    assert row["host_measured"]["kind"] == "measured" and row["host_threads"] == 1
    assert row["target_threads"] == 1
    scale = row["emulation"]["scale"]
    assert scale > 1  # a Cortex-A72 core is slower than any host this runs on
    # issue 20: the emulator scales the 1-thread runs' CPU time (which load barely moves), not their wall time
    assert row["latency_ms"]["p50"] == pytest.approx(row["host_measured"]["cpu_ms"]["p50"] * scale)
    assert row["emulation"]["emulated_ms"] == pytest.approx(row["host_measured"]["cpu_ms"]["min"] * scale)
    assert row["reference"]["ms"] == 95 and row["reference"]["ratio"] == pytest.approx(row["latency_ms"]["p50"] / 95)


def test_a_missing_model_is_an_error_never_a_skip(tmp_path):
    suite = load_suite(write_suite(tmp_path, "cases:\n  - model: models/nowhere/missing.onnx\n"))
    with pytest.raises(ModelLoadError, match=r"model file 'models/nowhere/missing.onnx' not found; looked in:"):
        expand(suite)
    with pytest.raises(ModelLoadError):
        run_suite(suite, BenchOptions(**FAST))


def test_suite_fields_are_validated_with_literal_messages(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_suite(write_suite(tmp_path, "cases:\n  - model: movenet-lightning-int8\n    thread: [2]\n"))
    assert str(e.value) == (
        "suite.yaml: unknown field 'cases[0].thread'. Valid fields of 'cases[0]': model, name, card, backends, "
        "threads, precisions, warmup, runs, accuracy, accuracy_gate, reference. See benchmarks/README.md")
    with pytest.raises(ConfigError, match=r"^suite\.yaml: field 'cases\[0\]\.runs' must be int, got str 'ten'$"):
        load_suite(write_suite(tmp_path, "cases:\n  - model: m.onnx\n    runs: ten\n"))
    with pytest.raises(ConfigError, match=r"cases\[0\]\.backends has 'tensorrt'; valid: auto, ort, litert"):
        load_suite(write_suite(tmp_path, "cases:\n  - model: m.onnx\n    backends: [tensorrt]\n"))
    with pytest.raises(ConfigError, match=r"accuracy_gate is 150; it is a PCK@0.2 x torso in percent"):
        load_suite(write_suite(tmp_path, "cases:\n  - model: m.onnx\n    accuracy_gate: 150\n"))


def test_models_x_backends_x_threads_x_precisions_expand_to_cases(tmp_path):
    suite = load_suite(write_suite(tmp_path, (
        "defaults: {threads: [1, 2], runs: 3}\n"
        "cases:\n  - model: movenet-lightning-fp32\n    precisions: [native, int8]\n"
        "  - model: movenet-lightning-int8\n")))
    ids = [c.id for c in expand(suite)]
    assert ids == ["movenet-lightning-fp32/ort/t1", "movenet-lightning-fp32/ort/t1/int8",
                   "movenet-lightning-fp32/ort/t2", "movenet-lightning-fp32/ort/t2/int8",
                   "movenet-lightning-int8/litert/t1", "movenet-lightning-int8/litert/t2"]


def test_a_precision_the_file_does_not_have_can_only_be_emulated(tmp_path):
    suite = load_suite(write_suite(tmp_path, "cases:\n  - model: movenet-lightning-fp32\n    precisions: [int8]\n"
                                             "    runs: 2\n    threads: [1]\n"))
    with pytest.raises(ConfigError, match=r"is fp32; precision 'int8' can only be emulated \(pass --device PROFILE\)"):
        run_suite(suite, BenchOptions(**FAST))


def test_ab_mode_interleaves_and_reports_per_pair_ratios(tmp_path):
    suite = load_suite(write_suite(tmp_path, (
        "defaults: {threads: [1], runs: 2, warmup: 1}\n"
        "cases:\n  - model: movenet-lightning-int8\n  - model: movenet-lightning-fp32\n")))
    doc = run_suite(suite, BenchOptions(ab=("movenet-lightning-int8", "movenet-lightning-fp32"), ab_pairs=6, **FAST))
    ab = doc["ab"]
    assert ab["kind"] == "measured" and ab["spinning"] is False and len(ab["ratios"]) == 6
    assert ab["ratios"] == pytest.approx([a / b for a, b in zip(ab["a_samples_ms"], ab["b_samples_ms"])])
    s = ab["ratio_a_over_b"]
    assert s["min"] <= s["p25"] <= s["median"] <= s["p75"] <= s["max"]


def test_an_accuracy_below_its_gate_fails_the_case_and_the_cli(assets, tmp_path, capsys):
    from edgepose.cli.main import main

    p = write_suite(tmp_path, ("cases:\n  - model: movenet-lightning-int8\n    threads: [2]\n    runs: 2\n"
                               "    warmup: 1\n    accuracy: true\n    accuracy_gate: 99.0\n"))
    rc = main(["bench", str(p), "--assets", str(assets), "--no-progress", "--out", str(tmp_path / "out")])
    assert rc == 1
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    acc = doc["cases"][0]["accuracy"]
    assert acc["status"] == "FAILED" and doc["failed"] == ["movenet-lightning-int8/litert/t2"]
    assert acc["pck_torso"] == pytest.approx(66.8, abs=2.0)  # $EDGEPOSE_ASSETS/ASSETS.md reference, same protocol
    assert (tmp_path / "out" / "pareto.png").is_file()
    assert "**FAILED accuracy gate:** movenet-lightning-int8/litert/t2" in capsys.readouterr().out


def test_the_video_case_reports_fps_and_per_stage_times(assets, tmp_path):
    suite = load_suite(write_suite(tmp_path, (
        "video:\n  - model: movenet-lightning-int8\n    clip: data/tfjs_testdata/pose_1.mp4\n"
        "    frames: 6\n    threads: 1\n")))
    doc = run_suite(suite, BenchOptions(assets=str(assets), progress=False))
    (v,) = doc["video"]
    assert v["frames"] == 6 and v["fps"] > 0 and v["kind"] == "measured"
    assert "infer" in v["stages_ms"] and v["frames_with_pose"] >= 5


def test_latency_stats_and_ratio_summary_are_plain_statistics():
    s = latency_stats([1.0, 2.0, 3.0, 4.0])
    assert (s["p50"], s["mean"], s["min"], s["max"], s["n"]) == (2.5, 2.5, 1.0, 4.0, 4)
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    r = ratio_summary([0.5, 0.5, 0.6, 0.4])
    assert r["median"] == 0.5 and r["min"] == 0.4 and r["ci95_median"][0] <= 0.5 <= r["ci95_median"][1]


def test_the_pareto_front_keeps_only_undominated_points():
    # (latency, accuracy): (3, 60) is dominated by (2, 65)
    assert pareto_front([(1.0, 50.0), (3.0, 60.0), (2.0, 65.0), (5.0, 70.0)]) == [0, 2, 3]


@pytest.mark.slow
def test_the_baselines_suite_runs_every_shared_model(assets, tmp_path):
    doc = run_suite(load_suite(REPO / "benchmarks" / "baselines.yaml"),
                    BenchOptions(assets=str(assets), runs=5, ab_pairs=6, progress=False))
    names = {r["name"] for r in doc["cases"]}
    assert {"movenet-lightning-int8", "movenet-lightning-fp32", "movenet-thunder-fp32", "blazepose-lite",
            "blazepose-full", "blazepose-heavy"} <= names
    assert not doc["failed"], doc["failed"]


def test_a_qdq_onnx_counts_as_int8_and_the_default_suite_runs_on_the_shipped_model():
    from edgepose.bench.graphstats import onnx_stats
    from edgepose.models import DEFAULT_MODEL, find_file, get_card

    path = find_file(get_card(DEFAULT_MODEL).files[0])
    stats = onnx_stats(str(path))
    assert stats.precision == "int8"  # DequantizeLinear -> Conv: an int8 kernel after ORT's fusion
    assert stats.macs == 270_549_504  # the same network as the official int8 TFLite
    doc = run_suite(load_suite(REPO / "benchmarks" / "default_model.yaml"), BenchOptions(runs=3, **FAST))
    assert [r["id"] for r in doc["cases"]] == [f"{DEFAULT_MODEL}/ort/t1", f"{DEFAULT_MODEL}/ort/t2"]
    assert all(r["precision"] == "int8" and r["status"] == "ok" for r in doc["cases"])
