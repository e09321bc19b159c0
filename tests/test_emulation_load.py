"""Issue 20: the emulated device figure must not move with the load on this host.

The host timings are synthetic (fake clocks, fake peak probes): a "load factor" stretches every
wall-clock time and the per-op profile the way a busy neighbour does, while the CPU time of a
1-thread run and the CPU-time host peaks stay put (what docs/research-notes.md E1 measured).
Nothing here is timed for real.
"""

from pathlib import Path

import pytest

from edgepose.bench.emulator import OpSample, Peaks, emulate

HOST = Peaks(fp32_gflops=100.0, int8_gops=400.0, bandwidth_gbs=10.0, threads=1)
TARGET = Peaks(fp32_gflops=10.0, int8_gops=20.0, bandwidth_gbs=2.0, threads=4)
CONV = dict(name="conv", op="Conv", macs=50_000_000, bytes=1_000_000, precision="fp32")  # ratio 10
ADD = dict(name="add", op="Add", macs=0, bytes=4_000_000, precision="fp32")  # ratio 5
SHIPPED_INT8 = Path(__file__).resolve().parent.parent / "edgepose" / "data" / "movenet_lightning_int8_qdq.onnx"


def _profiled(load: float) -> list[OpSample]:
    return [OpSample(**CONV, host_ms=2.0 * load), OpSample(**ADD, host_ms=1.0 * load)]


@pytest.mark.core
@pytest.mark.parametrize("load", [1.0, 1.7, 4.0])
def test_a_per_op_profile_taken_under_load_only_weights_the_ops(load):
    """The profile (ORT's per-op wall times) is stretched by the load; the total fed in is the
    fastest CPU-time run (3 ms). The old rule added the stretched op times up whenever they
    exceeded the total (4 x load: 62.5 ms at load 2.5); now the figure stays 3 x 25/3 = 25 ms."""
    e = emulate(_profiled(load), 3.0, HOST, TARGET)
    assert e.emulated_ms == pytest.approx(25.0)
    assert e.scale == pytest.approx(25.0 / 3.0)
    assert e.compute_bound_fraction == pytest.approx(20.0 / 25.0)


class _FakeClocks:
    """perf_counter / thread_time of a host where every call of a model costs ``cpu_ms`` of CPU
    and ``cpu_ms x load`` of wall time (the rest: other processes on the core)."""

    def __init__(self, load: float):
        self.load, self.wall, self.cpu = load, 0.0, 0.0

    def run(self, cpu_ms: float):
        self.cpu += cpu_ms / 1e3
        self.wall += cpu_ms * self.load / 1e3


@pytest.mark.core
@pytest.mark.parametrize("load", [1.0, 3.0])
def test_interleaved_latency_keeps_the_cpu_time_of_1_thread_runs_beside_the_wall_median(monkeypatch, load):
    from edgepose.compression import latency

    clocks = _FakeClocks(load)
    times = iter([2.0, 2.5, 2.2] * 100)
    monkeypatch.setattr(latency, "_runner", lambda path, threads: (lambda: clocks.run(next(times)), lambda: None))
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clocks.wall)
    monkeypatch.setattr(latency.time, "thread_time", lambda: clocks.cpu)
    calls = []
    rows = latency.interleaved_latency({"m": "m.onnx"}, rounds=4, per_round=3, warmup=0, threads=1,
                                       between_rounds=lambda: calls.append(len(calls)))
    assert calls == [0, 1, 2, 3]  # once before each round
    row = rows["m"]
    assert row.cpu_min == pytest.approx(2.0)  # the load moves none of the CPU-time figure
    assert row.p50 == pytest.approx(2.2 * load)  # the wall median is the host as it is now
    assert "cpu_samples" not in row.to_dict() and row.to_dict()["cpu_min"] == pytest.approx(2.0)
    rows = latency.interleaved_latency({"m": "m.onnx"}, rounds=1, per_round=2, warmup=0, threads=2)
    assert rows["m"].cpu_min is None  # at 2 threads the caller's CPU time is not the run's


class _FakeSampler:
    """A PeakSampler whose CPU-time peaks the load does not move; counts its blocks."""

    blocks = 0

    def __init__(self, runtime="ort", *, llc=None, **kw):
        self.llc = llc

    def sample(self):
        type(self).blocks += 1

    def values(self):
        return {"conv_fp32_gflops_1t": 100.0, "conv_int8_gops_1t": 400.0, "mem_bandwidth_gbs": 10.0}

    def apply(self, m):
        return {**m, **self.values()}


@pytest.mark.backend
@pytest.mark.parametrize("load", [1.0, 2.35, 5.0])
def test_the_emulated_figure_of_a_candidate_does_not_move_with_the_load(monkeypatch, load):
    """The issue's case: one file, emulated at 45.8 ms and 107.6 ms by two compress runs, because
    the figure was the wall-clock median (x load) times a ratio of peaks probed at another moment."""
    pytest.importorskip("onnx")
    import edgepose.bench._ortprof as ortprof
    import edgepose.bench.hostprobe as hostprobe
    from edgepose.compression import budget, latency
    from edgepose.profiles import load_profile, target_peaks

    tp = target_peaks(load_profile("rpi4"), 2, "ort")

    def fake_latency(paths, *, rounds, per_round, threads, between_rounds=None):
        assert threads == 1  # an emulation is fed by a 1-thread host run
        for _ in range(rounds):
            between_rounds()
        return {n: latency.LatencyRow(n, p, 3.0 * load, 3.5 * load, 3.1 * load, rounds * per_round,
                                      cpu_min=3.0, threads=1) for n, p in paths.items()}

    monkeypatch.setattr(latency, "interleaved_latency", fake_latency)
    monkeypatch.setattr(hostprobe, "PeakSampler", _FakeSampler)
    monkeypatch.setattr(ortprof, "profile_ort", lambda path, feeds, threads, runs: (_profiled(load), 3.2 * load))
    host = {"usable_cores": 2, "llc_bytes": None, "conv_fp32_gflops_1t": 1.0, "conv_fp32_gflops": None,
            "conv_int8_gops_1t": 1.0, "conv_int8_gops": None, "mem_bandwidth_gbs": 1.0}  # stale probe: replaced
    _FakeSampler.blocks = 0
    times, kind = budget.measure_candidates({"int8": str(SHIPPED_INT8)}, load_profile("rpi4"), threads=2,
                                            rounds=6, host=host)
    host_ms, target_ms, scale = times["int8"]
    expected = emulate(_profiled(1.0), 3.0, HOST, tp).emulated_ms
    assert kind == "emulated" and _FakeSampler.blocks == 6
    assert target_ms == pytest.approx(expected)  # the same at every load
    assert host_ms == pytest.approx(3.0 * load)  # the measured column still says how busy the host is
    assert scale == pytest.approx(expected / 3.0)


@pytest.mark.backend
def test_the_peak_sampler_replaces_only_the_1_thread_peaks():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgepose.bench.hostprobe import PeakSampler
    from edgepose.errors import ConfigError

    s = PeakSampler("ort", llc=4 << 20, block=1, hw=8, channels=8, bandwidth_mib=1)
    s.sample()
    s.sample()
    assert s.blocks == 2
    vals = s.values()
    assert set(vals) >= {"conv_fp32_gflops_1t", "mem_bandwidth_gbs", "cache_bandwidth_gbs"}
    assert all(v > 0 for v in vals.values())
    m = s.apply({"usable_cores": 4, "conv_fp32_gflops": 7.0, "conv_fp32_gflops_1t": -1.0, "llc_bytes": 4 << 20})
    assert m["conv_fp32_gflops"] == 7.0 and m["usable_cores"] == 4  # all-core and other fields kept
    assert m["conv_fp32_gflops_1t"] == vals["conv_fp32_gflops_1t"]
    with pytest.raises(ConfigError, match="runtime"):
        PeakSampler("tensorrt")
    with pytest.raises(ConfigError, match="block"):
        PeakSampler("ort", block=0)


@pytest.mark.core
def test_the_runtime_settings_record_names_the_deployment_runtimes_and_the_host():
    from edgepose.compression.latency import runtime_settings

    rs = runtime_settings(2)
    assert "XNNPACK" in rs["tflite"]["delegate"] and rs["tflite"]["threads"] == 2
    assert rs["onnx"]["providers"] == ["CPUExecutionProvider"]
    assert rs["cpu_model"] and isinstance(rs["isa_flags"], list)
