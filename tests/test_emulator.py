"""The roofline emulator's arithmetic on hand-computed cases, and the MAC counters."""

import pytest

from edgepose.bench.emulator import Emulation, OpSample, Peaks, emulate

pytestmark = pytest.mark.core

# Host: 100 GFLOP/s fp32, 400 GOP/s int8, 10 GB/s.  Target: 10 GFLOP/s, 20 GOP/s, 2 GB/s.
HOST = Peaks(fp32_gflops=100.0, int8_gops=400.0, bandwidth_gbs=10.0, threads=1)
TARGET = Peaks(fp32_gflops=10.0, int8_gops=20.0, bandwidth_gbs=2.0, threads=4)
# conv: 50 M MACs = 100 MFLOP, 1 MB.  host: max(1.0 ms, 0.1 ms) = 1 ms; target: max(10 ms, 0.5 ms) = 10 ms
CONV = dict(name="conv", op="Conv", macs=50_000_000, bytes=1_000_000, precision="fp32")
# add: no MACs, 4 MB.  host: 0.4 ms; target: 2 ms
ADD = dict(name="add", op="Add", macs=0, bytes=4_000_000, precision="fp32")


def test_roofline_time_is_the_slower_of_compute_and_memory():
    assert HOST.op_time_s(50e6, 1e6, "fp32") == pytest.approx(1e-3)
    assert HOST.op_time_s(0, 4e6, "fp32") == pytest.approx(0.4e-3)
    assert TARGET.op_time_s(50e6, 1e6, "int8") == pytest.approx(5e-3)  # 100 MOP / 20 GOP/s


def test_an_op_that_fits_in_the_host_cache_streams_at_cache_bandwidth():
    cached = Peaks(100.0, 400.0, 10.0, 1, cache_bytes=2e6, cache_bandwidth_gbs=40.0)
    assert cached.op_time_s(0, 2e6, "fp32") == pytest.approx(0.05e-3)  # 2 MB / 40 GB/s
    assert cached.op_time_s(0, 4e6, "fp32") == pytest.approx(0.4e-3)  # 4 MB / 10 GB/s (DRAM)
    # add (4 MB) from DRAM on the host, conv (1 MB) from cache: still compute-bound at 1 ms
    ops = [OpSample(**CONV, host_ms=2.0), OpSample(**dict(ADD, bytes=2_000_000), host_ms=1.0)]
    # add: host 2 MB / 40 GB/s = 0.05 ms, target 2 MB / 2 GB/s = 1 ms -> ratio 20 -> 20 ms
    assert emulate(ops, 3.0, cached, TARGET).emulated_ms == pytest.approx(20.0 + 20.0)
    with pytest.raises(ValueError, match=r"cache_bytes and Peaks.cache_bandwidth_gbs go together"):
        Peaks(1.0, 1.0, 1.0, 1, cache_bytes=1e6)


def test_profiled_ops_scale_by_their_own_roofline_ratio():
    ops = [OpSample(**CONV, host_ms=2.0), OpSample(**ADD, host_ms=1.0)]
    e = emulate(ops, 3.0, HOST, TARGET, keep_per_op=True)
    # conv: 2 ms x (10 / 1) = 20 ms (compute-bound); add: 1 ms x (2 / 0.4) = 5 ms (memory-bound)
    assert e.emulated_ms == pytest.approx(25.0)
    assert e.scale == pytest.approx(25.0 / 3.0)
    assert e.compute_bound_fraction == pytest.approx(20.0 / 25.0)
    assert [r["ratio"] for r in e.per_op] == [10.0, 5.0]
    assert e.method.startswith("roofline ratio (per-op profiled times")


def test_unprofiled_ops_share_the_measured_total_by_host_roofline_time():
    ops = [OpSample(**CONV), OpSample(**ADD)]
    # host roofline 1 ms : 0.4 ms -> 2.8 ms splits 2.0 / 0.8 -> 2.0 x 10 + 0.8 x 5 = 24 ms
    e = emulate(ops, 2.8, HOST, TARGET)
    assert e.emulated_ms == pytest.approx(24.0)
    assert "split by host roofline time" in e.method


def test_framework_overhead_outside_profiled_ops_scales_with_the_model():
    ops = [OpSample(**CONV, host_ms=2.0), OpSample(**ADD, host_ms=1.0)]
    # the run took 6 ms but the ops only 3 ms: the model scale (25/3) applies to all 6 ms
    assert emulate(ops, 6.0, HOST, TARGET).emulated_ms == pytest.approx(50.0)


def test_an_int8_target_of_an_fp32_model_uses_quarter_bytes_and_the_int8_peak():
    ops = [OpSample(**CONV, host_ms=2.0), OpSample(**ADD, host_ms=1.0)]
    e = emulate(ops, 3.0, HOST, TARGET, target_precision="int8")
    # conv: target max(100 MOP / 20 GOP/s = 5 ms, 0.25 MB / 2 GB/s) = 5 ms -> ratio 5 -> 10 ms
    # add: 1 MB at 2 GB/s = 0.5 ms -> ratio 1.25 -> 1.25 ms
    assert e.emulated_ms == pytest.approx(11.25)
    assert "int8 target emulated" in e.method


def test_ops_with_no_work_scale_like_one_core():
    op = OpSample(name="shape", op="Shape", macs=0, bytes=0, precision="fp32", host_ms=1.0)
    # one core: host 100/1 = 100 GFLOP/s, target 10/4 = 2.5 -> 40x
    assert emulate([op], 1.0, HOST, TARGET).emulated_ms == pytest.approx(40.0)


def test_the_emulator_refuses_nonsense_inputs():
    with pytest.raises(ValueError, match=r"measured_ms must be positive, got 0"):
        emulate([OpSample(**CONV)], 0, HOST, TARGET)
    with pytest.raises(ValueError, match=r"target_precision must be None, 'int8' or 'fp32', got 'fp16'"):
        emulate([OpSample(**CONV)], 1.0, HOST, TARGET, target_precision="fp16")
    with pytest.raises(ValueError, match=r"Peaks.bandwidth_gbs must be a positive number, got 0"):
        Peaks(1.0, 1.0, 0, 1)


def test_emulation_serialises_without_the_per_op_table_by_default():
    e = emulate([OpSample(**CONV, host_ms=1.0)], 1.0, HOST, TARGET, keep_per_op=True)
    assert isinstance(e, Emulation)
    assert "per_op" not in e.to_dict() and len(e.to_dict(per_op=True)["per_op"]) == 1


@pytest.mark.backend
def test_onnx_and_tflite_counters_agree_on_movenet_lightning(assets):
    """The int8 TFLite (parsed through LiteRT) and the fp32 ONNX twin are the same network."""
    from edgepose.bench.graphstats import model_stats

    t = model_stats(assets / "models/movenet/movenet_lightning_int8.tflite")
    o = model_stats(assets / "models/movenet/movenet_lightning_fp32.onnx")
    assert t.macs == o.macs == 270_549_504
    assert (t.precision, o.precision) == ("int8", "fp32")


@pytest.mark.backend
def test_mac_count_of_a_hand_built_conv_matches_the_formula(tmp_path):
    from edgepose.bench._tflite_probe import build_conv_tflite
    from edgepose.bench.graphstats import model_stats
    from edgepose.bench.hostprobe import build_conv_model

    (tmp_path / "c.onnx").write_bytes(build_conv_model(14, 16))
    (tmp_path / "c.tflite").write_bytes(build_conv_tflite(14, 16, int8=True))
    expected = 14 * 14 * 16 * 16 * 9  # out pixels x Cout x (Cin x 3 x 3)
    assert model_stats(tmp_path / "c.onnx").macs == expected
    assert model_stats(tmp_path / "c.tflite").macs == expected


def test_profiled_kernel_work_is_computed_from_recorded_shapes():
    from edgepose.bench._ortprof import op_work

    macs, nbytes, prec = op_work("Conv", [{"float": [1, 8, 10, 10]}, {"float": [4, 8, 3, 3]}, {"float": [4]}],
                                 [{"float": [1, 4, 10, 10]}])
    assert macs == 4 * 10 * 10 * 8 * 9
    assert nbytes == 4 * (800 + 288 + 4 + 400)
    assert prec == "fp32"
    assert op_work("Relu", [{"float": [1, 4]}], [{"float": [1, 4]}])[0] == 0


def test_calibration_bisects_the_efficiency_that_reproduces_the_published_figure():
    from edgepose.bench.calibrate import fit_efficiency

    # emulated = 5 ms memory-bound + 10 ms / efficiency compute-bound: 25 ms published -> 0.5
    assert fit_efficiency(lambda eff: 5.0 + 10.0 / eff, 25.0) == pytest.approx(0.5, rel=1e-6)
    # even full efficiency is too slow: capped at 1.0
    assert fit_efficiency(lambda eff: 50.0 + 10.0 / eff, 25.0) == 1.0


@pytest.mark.backend
def test_the_in_memory_calibration_networks_have_the_published_mac_counts(tmp_path):
    from edgepose.bench.calibrate import mobilenet_v1, mobilenet_v2
    from edgepose.bench.graphstats import model_stats

    (tmp_path / "v1.onnx").write_bytes(mobilenet_v1())
    (tmp_path / "v2.onnx").write_bytes(mobilenet_v2())
    # Howard et al. 2017: 569 M mult-adds; Sandler et al. 2018: 300 M
    assert model_stats(tmp_path / "v1.onnx").macs / 1e6 == pytest.approx(569, rel=0.01)
    assert model_stats(tmp_path / "v2.onnx").macs / 1e6 == pytest.approx(300, rel=0.02)
