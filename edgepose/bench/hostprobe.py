"""Measure this machine: cores, ISA flags, achieved GEMM/conv throughput, memory bandwidth.

``probe_host()`` returns a :class:`HostMeasurement`; ``edgepose profile`` turns it into a
``host`` device profile (:func:`edgepose.profiles.host_profile_from_measurement`). Every number
here is measured on this machine, never looked up.

Methods (documented so results can be compared across machines):

* **GEMM fp32**: ``numpy.matmul`` of two float32 1024x1024 matrices, best of N, 2*n^3 FLOPs.
  The 1-thread figure runs in a child process with ``OPENBLAS_NUM_THREADS=1`` (numpy's BLAS
  cannot change its thread count after import).
* **Conv fp32 / int8**: an ONNX model built in memory with the ``onnx`` helper API: one 3x3
  convolution, 128 -> 128 channels on a 56x56 map (fp32 ``Conv``; int8 ``QLinearConv`` with uint8
  activations and int8 weights), run with onnxruntime at 1 thread and at all cores, spinning
  off, best of N. FLOPs = 2 * MACs.
* **LiteRT conv fp32 / int8**: the same convolution as a ``.tflite`` flatbuffer (NHWC; int8 with
  per-channel weights) built with LiteRT's schema (:mod:`edgepose.bench._tflite_probe`), run by
  the LiteRT interpreter (XNNPACK) at 1 thread and at all cores. ``.tflite`` models are compared
  with these peaks, ``.onnx`` models with onnxruntime's.
* **Memory bandwidth**: single-thread ``numpy.copyto`` of a 128 MiB float32 array, counted as
  read + write bytes (the STREAM "copy" convention), best of N. Single-threaded to match the
  STREAM figures device profiles cite for Raspberry Pi boards.
* **Cache bandwidth**: the same copy with source + destination = half the last-level cache
  (size from Linux sysfs), best of >= 20: the bandwidth of ops whose tensors stay in cache.

Every **1-thread** figure (conv, LiteRT conv, copy and cache bandwidth) is timed in the calling
thread's CPU time (``time.thread_time``), not wall time: a 1-thread run executes in the calling
thread (onnxruntime with ``intra_op_num_threads=1``, XNNPACK with one thread, numpy's copy), so
its CPU time is its run time minus the time other processes held the core. On an idle machine
the two agree within 1 %; on a shared one the wall-clock best-of-N fell 3-8x under load while the
CPU-time best stayed put (docs/research-notes.md, E1). The all-core figures stay wall time (their
work runs in worker threads). :class:`PeakSampler` re-measures the 1-thread peaks interleaved with
a candidate's timing rounds, so that both sides of the emulator's ratio see the same moment.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

#: ISA flags worth reporting (x86 /proc/cpuinfo "flags", Arm "Features").
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",  # x86
    "asimd", "neon", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2",  # Arm
)


@dataclass
class ProbeOptions:
    """How long and how hard to probe.

    Attributes:
        repeats: timed repetitions per measurement; the best is kept (least disturbed by other
            processes on a shared machine; best-of-5 was seen to halve the peak under load 6).
        gemm_n: square GEMM size; 1024 is large enough to reach BLAS peak, small enough for
            ~10 ms per run on a laptop core.
        conv_hw: spatial size of the probe convolution (56 = a mid-network MobileNet stage).
        conv_channels: input = output channels of the probe convolution.
        bandwidth_mib: array size for the copy test; far larger than any L3 cache here.
        single_thread_gemm: also measure 1-thread numpy GEMM (spawns a child process, ~1 s).
    """

    repeats: int = 15  # best-of-15: a probe run is a few ms, so 15 dodge a noisy neighbour in ~3 s
    gemm_n: int = 1024  # see above
    conv_hw: int = 56  # see above
    conv_channels: int = 128  # 2*56*56*128*128*9 = 0.92 GFLOP per run: compute-bound
    bandwidth_mib: int = 128  # >> L3 on the machines we target
    single_thread_gemm: bool = True  # the per-core figure the emulator scales with

    def __post_init__(self):
        for name in ("repeats", "gemm_n", "conv_hw", "conv_channels", "bandwidth_mib"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"ProbeOptions.{name} must be a positive int, got {v!r}")


@dataclass
class HostMeasurement:
    """What :func:`probe_host` measured. GFLOP/s counts 2 FLOPs per multiply-accumulate;
    int8 figures are GOP/s with the same convention."""

    cpu_model: str
    arch: str
    logical_cores: int
    physical_cores: int
    usable_cores: int
    isa_flags: list[str]
    freq_mhz: float | None
    mem_total_gb: float
    gemm_fp32_gflops_1t: float | None
    gemm_fp32_gflops: float
    conv_fp32_gflops_1t: float
    conv_fp32_gflops: float
    conv_int8_gops_1t: float | None
    conv_int8_gops: float | None
    litert_conv_fp32_gflops_1t: float | None
    litert_conv_fp32_gflops: float | None
    litert_conv_int8_gops_1t: float | None
    litert_conv_int8_gops: float | None
    mem_bandwidth_gbs: float
    llc_bytes: int | None
    cache_bandwidth_gbs: float | None
    load_avg_1m: float
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def read_cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, list[str], float | None]:
    """CPU model name, the interesting ISA flags and the current MHz from ``/proc/cpuinfo``."""
    model, flags, mhz = platform.processor() or platform.machine(), set(), None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return model, [], None
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip().lower(), val.strip()
        if key in ("model name", "hardware", "cpu model") and val and model in ("", platform.machine()):
            model = val
        elif key in ("flags", "features") and not flags:
            flags = set(val.split())
        elif key == "cpu mhz" and mhz is None:
            try:
                mhz = float(val)
            except ValueError:
                pass
    return model, sorted(f for f in flags if f in INTERESTING_FLAGS), mhz


#: Clock of the 1-thread probes: the calling thread's CPU time (see the module docstring).
cpu_clock = time.thread_time


def _best(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def gemm_gflops(n: int = 1024, repeats: int = 7) -> float:
    """Achieved fp32 GFLOP/s of ``numpy.matmul`` (n x n) with numpy's default threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    t = _best(lambda: np.matmul(a, b, out=out), repeats)
    return 2.0 * n ** 3 / t / 1e9


def gemm_gflops_single_thread(n: int = 1024, repeats: int = 7) -> float | None:
    """1-thread numpy GEMM GFLOP/s, measured in a child process with BLAS threads pinned to 1."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = (f"from edgepose.bench.hostprobe import gemm_gflops; "
            f"print(gemm_gflops({int(n)}, {int(repeats)}))")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        log.warning("1-thread GEMM probe failed (%s); leaving it out", exc)
        return None


def build_conv_model(hw: int = 56, channels: int = 128, *, int8: bool = False) -> bytes:
    """Serialized ONNX model with one 3x3 convolution (``Conv`` or ``QLinearConv``), built with
    the ``onnx`` helper API. Input ``x`` [1, C, hw, hw] (float32, or uint8 when int8)."""
    from edgepose._optional import require

    onnx = require("onnx", "bench")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = channels
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.05
    shape = [1, c, hw, hw]
    if not int8:
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(c, np.float32), "b")]
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    else:
        wq = np.clip(np.round(w / 0.002), -127, 127).astype(np.int8)
        scal = lambda name, v, dt: numpy_helper.from_array(np.array(v, dtype=dt), name)  # noqa: E731
        inits = [numpy_helper.from_array(wq, "w"), scal("xs", 0.02, np.float32), scal("xz", 128, np.uint8),
                 scal("ws", 0.002, np.float32), scal("wz", 0, np.int8), scal("ys", 0.05, np.float32),
                 scal("yz", 128, np.uint8), numpy_helper.from_array(np.zeros(c, np.int32), "b")]
        node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                                ["y"], pads=[1, 1, 1, 1])
        x = helper.make_tensor_value_info("x", TensorProto.UINT8, shape)
        y = helper.make_tensor_value_info("y", TensorProto.UINT8, shape)
    graph = helper.make_graph([node], "edgepose_probe_conv", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="edgepose.hostprobe")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def conv_throughput(threads: int, *, int8: bool = False, hw: int = 56, channels: int = 128,
                    repeats: int = 7) -> float:
    """Achieved G(FL)OP/s of the probe convolution in onnxruntime with ``threads`` threads
    (1 thread: timed in CPU time, see the module docstring)."""
    fn, flops = _ort_conv(threads, int8=int8, hw=hw, channels=channels)
    return flops / _best(fn, repeats, cpu_clock if threads == 1 else time.perf_counter) / 1e9


def copy_bandwidth_gbs(mib: int = 128, repeats: int = 7) -> float:
    """Single-thread copy bandwidth in GB/s (read + write bytes, STREAM 'copy' convention)."""
    n = mib * (1 << 20) // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    t = _best(lambda: np.copyto(dst, src), repeats, cpu_clock)
    return 2.0 * src.nbytes / t / 1e9


def _ort_conv(threads: int = 1, *, int8: bool = False, hw: int = 56, channels: int = 128):
    """(run, FLOPs per run) of the probe convolution in onnxruntime (spinning off)."""
    from edgepose._optional import require

    ort = require("onnxruntime", "base")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    sess = ort.InferenceSession(build_conv_model(hw, channels, int8=int8), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    shape = (1, channels, hw, hw)
    x = rng.integers(0, 255, shape, dtype=np.uint8) if int8 else rng.standard_normal(shape, dtype=np.float32)
    return (lambda: sess.run(None, {"x": x})), 2.0 * hw * hw * channels * channels * 9


def _litert_conv_1t(*, int8: bool = False, hw: int = 56, channels: int = 128):
    """(run, FLOPs per run) of the probe convolution in a 1-thread LiteRT (XNNPACK) interpreter."""
    import tempfile

    from edgepose.backends.litert import load_interpreter_class
    from edgepose.bench._tflite_probe import build_conv_tflite

    cls, _ = load_interpreter_class()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.tflite")
        with open(path, "wb") as fh:
            fh.write(build_conv_tflite(hw, channels, int8=int8))
        it = cls(model_path=path, num_threads=1)
        it.allocate_tensors()
    d = it.get_input_details()[0]
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 127, d["shape"], dtype=np.int8) if int8 else rng.standard_normal(d["shape"]).astype(np.float32)
    it.set_tensor(d["index"], x)
    return it.invoke, 2.0 * hw * hw * channels * channels * 9


def _copy_1t(nbytes: int):
    """(run, bytes moved per run) of a single-thread copy of ``nbytes`` (read + write counted)."""
    src = np.ones(max(int(nbytes) // 4, 1024), dtype=np.float32)
    dst = np.empty_like(src)
    return (lambda: np.copyto(dst, src)), 2.0 * src.nbytes


class PeakSampler:
    """The 1-thread peaks the emulator divides by, re-measured in short blocks in CPU time.

    Call :meth:`sample` between the timing rounds of the model being emulated: each call runs
    every probe ``block`` times back to back after one untimed run (the cache-bandwidth copy
    then streams from a warm cache) and keeps each probe's best time over all calls. The model's
    time and the peaks are then both best-of-N CPU times from the same stretch of wall time, so
    a load on the machine barely moves their ratio (docs/research-notes.md, E1: the emulated
    figure of one file over idle and loaded runs went from a 23x spread to 1.4x).

    Args:
        runtime: ``ort`` or ``litert``: whose conv kernels set the compute peaks.
        llc: last-level cache bytes (:func:`llc_bytes`); None = no cache-bandwidth probe.
        block: timed runs of each probe per :meth:`sample`.
    """

    def __init__(self, runtime: str = "ort", *, llc: int | None = None, block: int = 3,
                 hw: int = 56, channels: int = 128, bandwidth_mib: int = 128):
        if runtime not in ("ort", "litert"):
            raise ConfigError(f"runtime must be 'ort' or 'litert', got {runtime!r}")
        if not isinstance(block, int) or block < 1:
            raise ConfigError(f"PeakSampler.block must be a positive int, got {block!r}")
        self.block = block
        conv, pre = (_litert_conv_1t, "litert_") if runtime == "litert" else (_ort_conv, "")
        self._probes = {f"{pre}conv_fp32_gflops_1t": conv(hw=hw, channels=channels)}
        try:
            self._probes[f"{pre}conv_int8_gops_1t"] = conv(int8=True, hw=hw, channels=channels)
        except Exception as exc:  # a runtime build without int8 conv kernels
            log.warning("int8 conv probe unavailable (%s: %s)", type(exc).__name__, exc)
        self._probes["mem_bandwidth_gbs"] = _copy_1t(bandwidth_mib << 20)
        if llc:
            self._probes["cache_bandwidth_gbs"] = _copy_1t(llc // 4)  # source + destination = LLC / 2
        self.best_s = dict.fromkeys(self._probes, float("inf"))
        self.blocks = 0

    def sample(self) -> None:
        """One block of every probe (a few tens of ms); keeps the best time of each. The cache copy
        (a fraction of a ms) runs 20 times a block: its first copies after other work are slower."""
        for key, (fn, _) in self._probes.items():
            n = max(self.block, 20) if key == "cache_bandwidth_gbs" else self.block
            self.best_s[key] = min(self.best_s[key], _best(fn, n, cpu_clock))
        self.blocks += 1

    def values(self) -> dict[str, float]:
        """Field of :class:`HostMeasurement` -> best G(FL)OP/s or GB/s so far (sampling once if never)."""
        if not self.blocks:
            self.sample()
        return {k: work / self.best_s[k] / 1e9 for k, (_, work) in self._probes.items()}

    def apply(self, measurement) -> dict:
        """``measurement`` (a :class:`HostMeasurement` or its dict) as a dict whose 1-thread peaks are
        this sampler's: the emulator's host side then comes from the same moment as the model's time."""
        m = dict(measurement) if isinstance(measurement, dict) else asdict(measurement)
        m.update(self.values())
        return m


def refresh_single_thread_peaks(m: "HostMeasurement", runtime: str, repeats: int = 15) -> None:
    """Re-measure the 1-thread peaks of ``runtime`` (CPU time) and keep the best of old and new in
    ``m`` (peaks are the best this host achieves). Used by the bench before each emulated case."""
    if runtime == "litert" and m.litert_conv_fp32_gflops_1t is None:
        runtime = "ort"  # the LiteRT probe did not run: onnxruntime's peaks stand in
    sampler = PeakSampler(runtime, llc=m.llc_bytes, block=repeats)
    for key, val in sampler.values().items():
        setattr(m, key, max(getattr(m, key) or 0.0, val))


def _litert_peaks(cores: int, o: ProbeOptions) -> dict:
    keys = ("litert_conv_fp32_gflops_1t", "litert_conv_fp32_gflops", "litert_conv_int8_gops_1t",
            "litert_conv_int8_gops")
    try:
        from edgepose.bench._tflite_probe import litert_conv_throughput

        kw = dict(hw=o.conv_hw, channels=o.conv_channels, repeats=o.repeats)
        one = {q: _litert_conv_1t(int8=q, hw=o.conv_hw, channels=o.conv_channels) for q in (False, True)}
        vals = [one[False][1] / _best(one[False][0], o.repeats, cpu_clock) / 1e9, litert_conv_throughput(cores, **kw),
                one[True][1] / _best(one[True][0], o.repeats, cpu_clock) / 1e9,
                litert_conv_throughput(cores, int8=True, **kw)]
        return dict(zip(keys, vals))
    except Exception as exc:  # LiteRT not installed, or a build without these kernels
        log.warning("LiteRT conv probe failed (%s: %s); .tflite models will be compared with "
                    "onnxruntime's peaks", type(exc).__name__, exc)
        return dict.fromkeys(keys)


def llc_bytes(cpu: int = 0) -> int | None:
    """Size of the last-level cache of ``cpu`` from Linux sysfs (None elsewhere)."""
    base = f"/sys/devices/system/cpu/cpu{cpu}/cache"
    best = (0, None)
    try:
        for idx in os.listdir(base):
            if not idx.startswith("index"):
                continue
            with open(f"{base}/{idx}/level") as fh:
                level = int(fh.read())
            with open(f"{base}/{idx}/size") as fh:
                txt = fh.read().strip().upper()
            size = int(txt.rstrip("KMG")) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(txt[-1], 1)
            best = max(best, (level, size))
    except (OSError, ValueError):
        return None
    return best[1]


def cache_bandwidth_gbs(llc: int, repeats: int = 7) -> float:
    """Single-thread copy bandwidth (read + write) with source + destination = half the LLC."""
    n = max(llc // 4 // 4, 1024)
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    t = _best(lambda: np.copyto(dst, src), max(repeats, 20), cpu_clock)
    return 2.0 * src.nbytes / t / 1e9


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide benchmark numbers (absent ones left out)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("edgepose", "numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime",
                 "opencv-python-headless", "onnx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def probe_host(options: ProbeOptions | None = None) -> HostMeasurement:
    """Measure this machine (about 5-15 s). See the module docstring for the methods."""
    o = options or ProbeOptions()
    t_start = time.perf_counter()
    model, flags, mhz = read_cpuinfo()
    cores = usable_cores()
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or cores
        mem_gb = psutil.virtual_memory().total / 1e9
    except ImportError:
        physical, mem_gb = cores, float("nan")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    log.info("probing host: %s, %d usable cores, load %.2f", model, cores, load)
    g1 = gemm_gflops_single_thread(o.gemm_n, o.repeats) if o.single_thread_gemm else None
    gn = gemm_gflops(o.gemm_n, o.repeats)
    c1 = conv_throughput(1, hw=o.conv_hw, channels=o.conv_channels, repeats=o.repeats)
    cn = conv_throughput(cores, hw=o.conv_hw, channels=o.conv_channels, repeats=o.repeats)
    try:
        q1 = conv_throughput(1, int8=True, hw=o.conv_hw, channels=o.conv_channels, repeats=o.repeats)
        qn = conv_throughput(cores, int8=True, hw=o.conv_hw, channels=o.conv_channels, repeats=o.repeats)
    except Exception as exc:  # an onnxruntime build without QLinearConv kernels
        log.warning("int8 conv probe failed (%s: %s); int8 peaks left out", type(exc).__name__, exc)
        q1 = qn = None
    lite = _litert_peaks(cores, o)
    bw = copy_bandwidth_gbs(o.bandwidth_mib, o.repeats)
    llc = llc_bytes()
    cbw = cache_bandwidth_gbs(llc, o.repeats) if llc else None
    m = HostMeasurement(
        cpu_model=model, arch=platform.machine(), logical_cores=os.cpu_count() or cores,
        physical_cores=physical, usable_cores=cores, isa_flags=flags, freq_mhz=mhz,
        mem_total_gb=round(mem_gb, 2), gemm_fp32_gflops_1t=g1, gemm_fp32_gflops=gn,
        conv_fp32_gflops_1t=c1, conv_fp32_gflops=cn, conv_int8_gops_1t=q1, conv_int8_gops=qn, **lite,
        mem_bandwidth_gbs=bw, llc_bytes=llc, cache_bandwidth_gbs=cbw, load_avg_1m=load, versions=package_versions(),
        seconds=time.perf_counter() - t_start)
    log.info("host probe: %s", json.dumps(m.to_dict()))
    return m
