"""Calibrate a device profile's ``cpu.efficiency`` on one published latency.

The emulator has one free number per device, ``cpu.efficiency``: the fraction of theoretical
peak the device's runtime reaches *relative to* what this host's runtime reaches on the same
model. It is fitted on ONE published figure and then validated on others, never fitted to the
figures it is validated on. Calibration points (:data:`PUBLISHED`):

* ``movenet_thunder_fp16``: MoveNet Thunder FP16 on a Raspberry Pi 4, 594 ms (4 threads), and on
  a Pixel 5 (Snapdragon 765G), 155 ms -- TensorFlow Lite pose estimation overview page,
  performance table (tensorflow.org/lite/examples/pose_estimation/overview). The fp32 ONNX twin
  stands in for the fp16 file: LiteRT dequantises fp16 weights to fp32 on CPU, so the arithmetic
  is fp32 either way. This is the shipped calibration: same publication and benchmark method as
  the validation targets (Lightning int8/fp16, Thunder int8), but not one of them.
* ``mobilenet_v2``: MobileNet v2 1.0 fp32, 45 ms on a Raspberry Pi 4 (4 threads), MobileNet v1
  76 ms -- github.com/google/XNNPACK README, "Raspberry Pi" table (2020-01-09). An independent
  source; the MobileNets are built here in memory with the ``onnx`` helper API (random weights).

:func:`calibrate_efficiency` times the calibration model on this host, then bisects
``efficiency`` until the emulated latency equals the published one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from edgepose._optional import require

log = logging.getLogger(__name__)

_TF_POSE = "tensorflow.org/lite/examples/pose_estimation/overview, performance table"
_XNNPACK = "github.com/google/XNNPACK README, Raspberry Pi table (RPi 4, BCM2711), 2020-01-09"
#: Published latencies: (profile, point) -> (ms, threads, source).
PUBLISHED = {
    ("rpi4", "movenet_thunder_fp16"): (594.0, 4, _TF_POSE + " (Raspberry Pi 4, CPU 4 threads)"),
    ("android-midrange", "movenet_thunder_fp16"): (155.0, 4, _TF_POSE + " (Pixel 5, CPU 4 threads)"),
    ("rpi4", "mobilenet_v2"): (45.0, 4, _XNNPACK),
    ("rpi4", "mobilenet_v1"): (76.0, 4, _XNNPACK),
}
#: The calibration point each shipped profile's efficiency comes from.
DEFAULT_POINT = "movenet_thunder_fp16"

_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
       (6, 320, 1, 1)]  # (expansion t, channels c, repeats n, stride s): Sandler et al. 2018, Table 2
_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
       (512, 1), (512, 1), (1024, 2), (1024, 1)]  # (pointwise channels, depthwise stride): Howard et al. 2017


class _Builder:
    def __init__(self):
        self.onnx = require("onnx", "bench")
        self.nodes, self.inits, self.n = [], [], 0
        self.rng = np.random.default_rng(0)

    def _name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def conv(self, x, cin, cout, k, stride, group=1, relu6=True):
        from onnx import helper, numpy_helper

        w, b, y = self._name("w"), self._name("b"), self._name("conv")
        fan = cin // group * k * k
        self.inits += [numpy_helper.from_array(
            (self.rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(fan)).astype(np.float32), w),
            numpy_helper.from_array(np.zeros(cout, np.float32), b)]
        p = k // 2
        self.nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[k, k], group=group,
                                           strides=[stride, stride], pads=[p, p, p, p]))
        if not relu6:
            return y
        r = self._name("relu6")
        lo, hi = self._name("lo"), self._name("hi")
        self.inits += [numpy_helper.from_array(np.array(0, np.float32), lo),
                       numpy_helper.from_array(np.array(6, np.float32), hi)]
        self.nodes.append(helper.make_node("Clip", [y, lo, hi], [r]))
        return r

    def head(self, x, c):
        from onnx import helper, numpy_helper

        p, f, w, b, y = (self._name(s) for s in ("pool", "flat", "fcw", "fcb", "logits"))
        self.nodes += [helper.make_node("GlobalAveragePool", [x], [p]),
                       helper.make_node("Flatten", [p], [f])]
        self.inits += [numpy_helper.from_array(
            (self.rng.standard_normal((c, 1000)) / np.sqrt(c)).astype(np.float32), w),
            numpy_helper.from_array(np.zeros(1000, np.float32), b)]
        self.nodes.append(helper.make_node("Gemm", [f, w, b], ["logits"]))
        return "logits"

    def model(self, name) -> bytes:
        from onnx import TensorProto, helper

        g = helper.make_graph(self.nodes, name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="edgepose.calibrate")
        m.ir_version = 8
        self.onnx.checker.check_model(m)
        return m.SerializeToString()


def mobilenet_v2() -> bytes:
    """MobileNet v2 1.0 224 (300 M MACs) as a serialized ONNX model with random weights."""
    b = _Builder()
    x, c = b.conv("x", 3, 32, 3, 2), 32
    for t, cout, n, s in _V2:
        for i in range(n):
            stride = s if i == 0 else 1
            h = b.conv(x, c, c * t, 1, 1) if t != 1 else x
            h = b.conv(h, c * t, c * t, 3, stride, group=c * t)
            h = b.conv(h, c * t, cout, 1, 1, relu6=False)
            if stride == 1 and c == cout:
                from onnx import helper

                y = b._name("add")
                b.nodes.append(helper.make_node("Add", [x, h], [y]))
                h = y
            x, c = h, cout
    x = b.conv(x, c, 1280, 1, 1)
    b.head(x, 1280)
    return b.model("mobilenet_v2")


def mobilenet_v1() -> bytes:
    """MobileNet v1 1.0 224 (569 M MACs) as a serialized ONNX model with random weights."""
    b = _Builder()
    x, c = b.conv("x", 3, 32, 3, 2), 32
    for cout, s in _V1:
        x = b.conv(x, c, c, 3, s, group=c)
        x = b.conv(x, c, cout, 1, 1)
        c = cout
    b.head(x, c)
    return b.model("mobilenet_v1")


@dataclass
class Calibration:
    profile: str
    point: str
    published_ms: float
    threads: int
    host_ms: float
    efficiency: float
    source: str
    checks: list


def _host_ops(point: str, threads: int, assets=None, sampler=None):
    """(op samples, host ms) of a calibration point's model, profiled with onnxruntime. The host ms
    is the profile's fastest wall time, or at 1 thread with a ``sampler`` (a
    :class:`~edgepose.bench.hostprobe.PeakSampler`) the fastest CPU-time run, timed in rounds
    interleaved with the sampler's peak probes: the way ``edgepose compress`` feeds the emulator."""
    import os
    import tempfile

    from edgepose.bench._ortprof import profile_ort

    with tempfile.TemporaryDirectory() as tmp:
        if point.startswith("mobilenet"):
            path = os.path.join(tmp, "m.onnx")
            with open(path, "wb") as fh:
                fh.write(mobilenet_v2() if point == "mobilenet_v2" else mobilenet_v1())
            feeds, runs = {"x": np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)}, 20
        else:
            from edgepose.bench.suite import resolve_model

            name = {"movenet_thunder_fp16": "movenet-thunder-fp32"}[point]
            path = str(resolve_model(name, assets=assets)[0])
            feeds, runs = {"input:0": np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3)).astype(np.int32)}, 10
        ops, wall = profile_ort(path, feeds, threads=threads, runs=runs)
        if threads != 1 or sampler is None:
            return ops, wall
        import onnxruntime as ort

        from edgepose.bench.measure import cpu_best_ms

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return ops, cpu_best_ms(lambda: sess.run(None, feeds), rounds=5, per_round=2,
                                between_rounds=sampler.sample)


def fit_efficiency(emulated_at, published_ms: float) -> float:
    """Bisect efficiency in (0, 1] so that ``emulated_at(eff) == published_ms`` (emulated time
    falls monotonically as efficiency grows); 1.0 when even that is too slow."""
    lo, hi = 1e-3, 1.0
    if emulated_at(hi) > published_ms:
        log.warning("efficiency 1.0 still emulates %.1f ms > published %.1f ms", emulated_at(hi), published_ms)
        return hi
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if emulated_at(mid) > published_ms else (lo, mid)
    return (lo + hi) / 2


def calibrate_efficiency(profile, host_measurement, *, point: str = DEFAULT_POINT, assets=None,
                         host_threads: int | None = None) -> Calibration:
    """Fit ``profile.cpu.efficiency`` on the published figure ``point``.

    Args:
        profile: the :class:`~edgepose.profiles.DeviceProfile` to calibrate.
        host_measurement: this host's :class:`~edgepose.bench.hostprobe.HostMeasurement`.
        point: a calibration point with an entry for ``profile.name`` in :data:`PUBLISHED`.
        assets: root holding ``models/`` (for the MoveNet points).
        host_threads: host threads of the calibration run (default: the bench's emulation
            setting, 1 thread), so calibration and emulation see the host the same way.

    Returns:
        :class:`Calibration`; ``checks`` holds the other points of the same profile emulated at
        the fitted value (for mobilenet_v2, the MobileNet v1 cross-check).
    """
    from edgepose.bench.emulator import emulate
    from edgepose.errors import ConfigError
    from edgepose.profiles import host_peaks, target_peaks

    if (profile.name, point) not in PUBLISHED:
        valid = sorted(f"{p}:{q}" for p, q in PUBLISHED)
        raise ConfigError(f"no published calibration figure {point!r} for profile {profile.name!r}; "
                          f"available (profile:point): {', '.join(valid)}")
    pub_ms, threads, source = PUBLISHED[(profile.name, point)]
    from edgepose.bench.runner import EMULATION_HOST_THREADS

    cores = int(host_measurement["usable_cores"] if isinstance(host_measurement, dict)
                else host_measurement.usable_cores)
    th = min(host_threads or EMULATION_HOST_THREADS, cores, threads)
    t0 = time.perf_counter()
    sampler = None
    if th == 1:  # peaks and model time both in CPU time, interleaved (as edgepose compress)
        from edgepose.bench.hostprobe import PeakSampler

        llc = (host_measurement.get("llc_bytes") if isinstance(host_measurement, dict)
               else host_measurement.llc_bytes)
        sampler = PeakSampler("ort", llc=llc)
    ops, wall = _host_ops(point, th, assets, sampler)
    if sampler is not None:
        host_measurement = sampler.apply(host_measurement)
    elif not isinstance(host_measurement, dict):  # best peaks seen, as the bench does per case
        from edgepose.bench.hostprobe import refresh_single_thread_peaks

        refresh_single_thread_peaks(host_measurement, "ort")
    hp = host_peaks(host_measurement, th, "ort")

    def at(eff, ops=ops, wall=wall):
        prof = replace(profile, cpu=replace(profile.cpu, efficiency=eff))
        return emulate(ops, wall, hp, target_peaks(prof, threads, "ort")).emulated_ms

    eff = fit_efficiency(at, pub_ms)
    checks = []
    for (pname, other), (ms, _, src) in PUBLISHED.items():
        if pname != profile.name or other == point:
            continue
        ops2, wall2 = _host_ops(other, th, assets, sampler)
        em = at(eff, ops2, wall2)
        checks.append({"point": other, "published_ms": ms, "emulated_ms": em, "ratio": em / ms,
                       "host_ms": wall2, "source": src})
    log.info("calibrated %s on %s: efficiency %.3f (%.1f s)", profile.name, point, eff,
             time.perf_counter() - t0)
    return Calibration(profile.name, point, pub_ms, threads, wall, eff, source, checks)
