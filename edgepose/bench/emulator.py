"""Roofline emulation: estimate a target device's latency from a measurement on this host.

For each executed op *i* with ``macs_i`` and ``bytes_i`` (:mod:`edgepose.bench.graphstats`,
or onnxruntime's profiler for the ops that really ran after graph fusion):

    T_host_i   = max(2 * macs_i / P_host(prec_i, t_host),   bytes_i / B_host)
    T_target_i = max(2 * macs_i / P_target(prec_i, t_tgt), bytes_i / B_target)
    emulated_i = measured_i * T_target_i / T_host_i

so an op that is memory-bound on either side scales with the bandwidth ratio and a
compute-bound one with the peak ratio. On the host, an op whose bytes fit in half the measured
last-level cache streams at the measured cache bandwidth (MoveNet's activations live in a
desktop L3); the targets have no cited cache-bandwidth figures, so they stream from DRAM. ``P_host`` is the *measured* conv throughput of this host
(``edgepose profile``) at the thread count used; ``P_target`` is the profile's theoretical peak
(cores x GHz x ops/cycle) x ``cpu.efficiency`` x ``sustained_factor``; ``t_tgt`` is the case's
thread count capped at the profile's cores, ``t_host`` the same capped at this host's cores.

Where per-op times are not available (LiteRT has no per-op profiler in Python) the measured
total is split over the ops in proportion to ``T_host_i``; so is any time the profiler does not
attribute to an op (framework overhead). When every op is profiled, the profile gives only the
*weights*: the emulated figure is ``measured_ms x sum(host_ms_i x ratio_i) / sum(host_ms_i)``,
whether the profiled ops add up to more or less than ``measured_ms``. Ops with neither MACs nor
bytes scale with the 1-thread fp32 peak ratio.

**Load on the host** (docs/research-notes.md, E1). The figure is ``measured_ms`` times a ratio
of peaks, so both must be taken the same way at the same moment, or a busy host moves it (the
same file was emulated at 46 ms and 108 ms by two runs): ``edgepose compress`` feeds the fastest
1-thread run in the calling thread's CPU time (:func:`edgepose.compression.latency.interleaved_latency`,
``cpu_min``), and host peaks re-measured in CPU time in blocks interleaved with those runs
(:class:`edgepose.bench.hostprobe.PeakSampler`). CPU time leaves out the time other processes
held the core; best-of-N leaves out the runs they disturbed (cache, memory bus). Over idle and
loaded runs the figure of one file now spreads 1.4x (was 23x); what remains is the model's own
CPU time drifting with the neighbours' cache and memory traffic. ``cpu.efficiency`` must be
fitted the same way (:mod:`edgepose.bench.calibrate` does). Every figure the emulator writes is
labelled :data:`EMULATED`.

``target_precision="int8"`` emulates an int8 build of an fp32 model (for example Thunder int8,
which is not among the shared files): target bytes are divided by 4 and MAC ops use the int8
peak. Results say so in ``method``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgepose.bench.graphstats import LayerStat
from edgepose.errors import ConfigError

#: Label written on every figure the emulator produces.
EMULATED = "emulated"
#: Label written on every figure timed on this machine.
MEASURED = "measured"


@dataclass(frozen=True)
class Peaks:
    """Roofline parameters of one machine at one thread count.

    Attributes:
        fp32_gflops: achievable fp32 throughput (GFLOP/s, 2 per MAC).
        int8_gops: achievable int8 throughput (GOP/s, 2 per MAC).
        bandwidth_gbs: achievable DRAM bandwidth (GB/s).
        threads: thread count these peaks hold for.
        cache_bytes: an op whose bytes fit in this many bytes streams from the last-level cache
            at ``cache_bandwidth_gbs``; None = every op streams from DRAM.
        cache_bandwidth_gbs: last-level-cache bandwidth (GB/s), with ``cache_bytes``.
    """

    fp32_gflops: float
    int8_gops: float
    bandwidth_gbs: float
    threads: int
    cache_bytes: float | None = None
    cache_bandwidth_gbs: float | None = None

    def __post_init__(self):
        for name in ("fp32_gflops", "int8_gops", "bandwidth_gbs"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0):
                raise ConfigError(f"Peaks.{name} must be a positive number, got {v!r}")
        if (self.cache_bytes is None) != (self.cache_bandwidth_gbs is None):
            raise ConfigError("Peaks.cache_bytes and Peaks.cache_bandwidth_gbs go together: set both or neither")

    def peak(self, precision: str) -> float:
        return self.int8_gops if precision == "int8" else self.fp32_gflops

    def op_time_s(self, macs: float, nbytes: float, precision: str) -> float:
        """Roofline time of one op in seconds: the slower of compute and memory (from the
        last-level cache when the op's bytes fit in ``cache_bytes``, else from DRAM)."""
        bw = self.bandwidth_gbs
        if self.cache_bytes is not None and nbytes <= self.cache_bytes:
            bw = self.cache_bandwidth_gbs
        return max(2.0 * macs / (self.peak(precision) * 1e9), nbytes / (bw * 1e9))


@dataclass
class OpSample:
    """One executed op: its work and (when profiled) its measured host time in ms."""

    name: str
    op: str
    macs: int
    bytes: int
    precision: str
    host_ms: float | None = None

    @classmethod
    def from_layer(cls, lay: LayerStat, host_ms: float | None = None) -> "OpSample":
        return cls(lay.name, lay.op, lay.macs, lay.bytes, lay.precision, host_ms)


@dataclass
class Emulation:
    """The emulated latency of one measured figure, with the evidence behind it."""

    emulated_ms: float
    measured_ms: float
    scale: float
    compute_bound_fraction: float  # share of emulated time in ops compute-bound on the target
    method: str
    host_peaks: Peaks
    target_peaks: Peaks
    per_op: list[dict] = field(default_factory=list)

    def to_dict(self, *, per_op: bool = False) -> dict:
        d = asdict(self)
        if not per_op:
            d.pop("per_op")
        return d


def emulate(ops: list[OpSample], measured_ms: float, host: Peaks, target: Peaks, *,
            target_precision: str | None = None, keep_per_op: bool = False) -> Emulation:
    """Scale ``measured_ms`` (this host) to the target by the per-op roofline ratio.

    Args:
        ops: the executed ops; ``host_ms`` set where a profiler timed them.
        measured_ms: the measured figure to scale (e.g. the p50 of the timed runs).
        host: this host's peaks at the thread count the measurement used.
        target: the target's peaks at the (capped) thread count of the case.
        target_precision: ``"int8"`` to emulate an int8 build of an fp32 model; None keeps each
            op's own precision.
        keep_per_op: keep the per-op breakdown in the result (large).

    Returns:
        :class:`Emulation`.
    """
    if measured_ms <= 0:
        raise ConfigError(f"measured_ms must be positive, got {measured_ms!r}")
    if target_precision not in (None, "int8", "fp32"):
        raise ConfigError(f"target_precision must be None, 'int8' or 'fp32', got {target_precision!r}")
    if not ops:
        raise ConfigError("emulate() needs at least one op (the model's layer statistics)")
    # ops with neither MACs nor bytes (shape bookkeeping) scale like one core's fp32 speed
    overhead_ratio = (host.fp32_gflops / host.threads) / (target.fp32_gflops / target.threads)

    th, tt = [], []
    for op in ops:
        tprec = target_precision if (target_precision and op.macs) else op.precision
        tbytes = op.bytes / 4.0 if (target_precision == "int8" and op.precision != "int8") else op.bytes
        h = host.op_time_s(op.macs, op.bytes, op.precision)
        t = target.op_time_s(op.macs, tbytes, tprec)
        th.append(h)
        tt.append(t)
    sum_h = sum(th)
    profiled = sum(op.host_ms for op in ops if op.host_ms is not None)
    unattributed = max(measured_ms - profiled, 0.0)
    # ops without a profiled time share the unattributed time in proportion to their roofline time
    share_base = sum(h for op, h in zip(ops, th) if op.host_ms is None) or sum_h
    emulated, compute_ms, rows = 0.0, 0.0, []
    for op, h, t in zip(ops, th, tt):
        if op.host_ms is not None:
            m = op.host_ms
        elif share_base > 0:
            m = unattributed * h / share_base
        else:
            m = unattributed / len(ops)
        ratio = t / h if h > 0 else overhead_ratio
        e = m * ratio
        emulated += e
        tprec = target_precision if (target_precision and op.macs) else op.precision
        if op.macs and 2.0 * op.macs / (target.peak(tprec) * 1e9) >= t * 0.999:
            compute_ms += e
        if keep_per_op:
            rows.append({"name": op.name, "op": op.op, "macs": op.macs, "bytes": op.bytes,
                         "host_ms": round(m, 5), "ratio": round(ratio, 4), "emulated_ms": round(e, 5)})
    if profiled > 0 and all(op.host_ms is not None for op in ops):
        # every op profiled: the profile weights the ops, the measured total sets the level (a larger
        # total is framework overhead, scaled like the model; a smaller one a faster, unprofiled run)
        emulated *= measured_ms / profiled
        compute_ms *= measured_ms / profiled
    how = "per-op profiled times" if profiled > 0 else "measured total split by host roofline time"
    if target_precision == "int8":
        how += "; int8 target emulated from a non-int8 model (bytes/4, int8 peak)"
    return Emulation(emulated_ms=emulated, measured_ms=measured_ms, scale=emulated / measured_ms,
                     compute_bound_fraction=compute_ms / emulated if emulated else 0.0,
                     method=f"roofline ratio ({how})", host_peaks=host, target_peaks=target,
                     per_op=rows)
