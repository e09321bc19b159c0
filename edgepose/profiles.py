"""Device profiles: one commented YAML per target device, validated on load.

A profile describes what the benchmark emulator and the offload budget need to know about a
device: CPU clusters and ISA features, accelerators and the runtime providers that use them,
memory size and bandwidth, sustained (thermal) factor, frame budget, network links and power.
``list_profiles()`` names the shipped ones (``device_profiles/*.yaml``); ``load_profile(name or
path)`` reads and validates one. The schema is the dataclasses below; ``device_profiles/SCHEMA.md``
documents it field by field. An unknown or mistyped field raises :class:`ConfigError` naming the
file, the field and the valid fields.

``host`` is special: it is *measured* (``edgepose profile``), written to
``$EDGEPOSE_PROFILE_DIR/host.yaml`` (default ``~/.cache/edgepose/profiles/host.yaml``) and read
back from there; the shipped ``host.yaml`` is an example of that format measured on the
project's development machine, used only when asked for by path.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

from edgepose.errors import ConfigError, unknown_name

#: Environment variable: folder where ``edgepose profile`` writes (and ``host`` is read from).
PROFILE_DIR_ENV = "EDGEPOSE_PROFILE_DIR"
SCHEMA_VERSION = 1


def _f(doc: str, **kw):
    """A dataclass field with its schema documentation in ``metadata['doc']``."""
    return field(metadata={"doc": doc}, **kw)


@dataclass(frozen=True)
class CpuCluster:
    """A group of identical cores."""

    core: str = _f("core microarchitecture, e.g. Cortex-A72")
    count: int = _f("number of cores in the cluster")
    freq_ghz: float = _f("sustainable all-core clock in GHz")
    fp32_flops_per_cycle: float = _f("peak fp32 FLOPs per cycle per core (an FMA counts 2)")
    int8_ops_per_cycle: float = _f("peak int8 ops per cycle per core (a multiply-accumulate counts 2)")

    def peak_gflops(self, precision: str) -> float:
        per = self.int8_ops_per_cycle if precision == "int8" else self.fp32_flops_per_cycle
        return self.freq_ghz * per


@dataclass(frozen=True)
class Cpu:
    """The CPU complex."""

    name: str = _f("marketing or SoC name")
    arch: str = _f("instruction set architecture: aarch64, x86_64, armv7l")
    isa: list = _f("ISA features the runtimes use (e.g. asimd, asimddp, avx2, avx512_vnni)")
    int8_dot_product: bool = _f("has int8 dot-product instructions (Arm SDOT/UDOT, x86 VNNI)")
    clusters: list = _f("list of CpuCluster, fastest first")
    efficiency: float = _f("achieved fraction of theoretical peak relative to this host's measured "
                           "peak, for the runtime the device uses; 1.0 for measured profiles")

    @property
    def cores(self) -> int:
        return sum(c.count for c in self.clusters)

    def peak_gflops(self, precision: str, threads: int | None = None) -> float:
        """Theoretical peak of the fastest ``threads`` cores (all cores when None)."""
        per_core = sorted((c.peak_gflops(precision) for c in self.clusters for _ in range(c.count)),
                          reverse=True)
        n = len(per_core) if threads is None else max(1, min(threads, len(per_core)))
        return float(sum(per_core[:n]))


@dataclass(frozen=True)
class Accelerator:
    """A GPU / NPU / DSP and the runtime providers or delegates that reach it."""

    name: str = _f("accelerator name")
    kind: str = _f("gpu, npu or dsp")
    providers: list = _f("onnxruntime execution providers / LiteRT delegates that use it")
    peak_fp16_tflops: typing.Optional[float] = _f("peak fp16 TFLOP/s, null if unknown", default=None)
    peak_int8_tops: typing.Optional[float] = _f("peak int8 TOP/s, null if unknown", default=None)


@dataclass(frozen=True)
class Memory:
    size_gb: float = _f("RAM in GB")
    bandwidth_gbs: float = _f("achieved single-thread copy bandwidth in GB/s (STREAM 'copy')")
    theoretical_bandwidth_gbs: typing.Optional[float] = _f("bus width x transfer rate, GB/s",
                                                           default=None)


@dataclass(frozen=True)
class Runtimes:
    ort_providers: list = _f("onnxruntime execution providers in priority order")
    litert_delegates: list = _f("LiteRT delegates available (xnnpack is the CPU default)")


@dataclass(frozen=True)
class FrameBudget:
    target_fps: float = _f("frames per second the application must sustain")

    @property
    def frame_ms(self) -> float:
        return 1000.0 / self.target_fps


@dataclass(frozen=True)
class NetworkLink:
    name: str = _f("link name, e.g. wifi, lte, ethernet")
    uplink_mbps: float = _f("device -> server throughput, Mbit/s")
    downlink_mbps: float = _f("server -> device throughput, Mbit/s")
    rtt_ms: float = _f("round-trip time, ms")
    jitter_ms: float = _f("round-trip time standard deviation, ms")
    loss_pct: float = _f("packet loss, percent")


@dataclass(frozen=True)
class Power:
    idle_w: typing.Optional[float] = _f("board power at idle, W", default=None)
    load_w: typing.Optional[float] = _f("board power with all CPU cores loaded, W", default=None)


@dataclass(frozen=True)
class DeviceProfile:
    """One device. Build with :func:`load_profile`; fields mirror the YAML one to one."""

    schema_version: int = _f("schema version, currently 1")
    name: str = _f("profile name (the --device value); must match the file name")
    description: str = _f("one line")
    source: str = _f("published (numbers from public sources) or measured (edgepose profile)")
    cpu: Cpu = _f("the CPU complex")
    memory: Memory = _f("RAM size and bandwidth")
    runtimes: Runtimes = _f("runtime providers / delegates available on the device")
    sustained_factor: float = _f("fraction of peak clock sustained under continuous load (thermal)")
    frame_budget: FrameBudget = _f("the per-frame latency budget")
    networks: list = _f("list of NetworkLink")
    accelerators: list = _f("list of Accelerator", default_factory=list)
    power: Power = _f("board power, null where unknown", default_factory=Power)
    measured: typing.Optional[dict] = _f("host only: what edgepose profile measured", default=None)

    @property
    def is_measured(self) -> bool:
        return self.source == "measured"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- schema validation ---------------------------------------------------------------------
_LIST_ITEMS = {(Cpu, "clusters"): CpuCluster, (Cpu, "isa"): str, (DeviceProfile, "networks"): NetworkLink,
               (DeviceProfile, "accelerators"): Accelerator, (Runtimes, "ort_providers"): str,
               (Runtimes, "litert_delegates"): str, (Accelerator, "providers"): str}
_ENUMS = {(DeviceProfile, "source"): ("published", "measured"), (Accelerator, "kind"): ("gpu", "npu", "dsp")}
_POSITIVE = {(CpuCluster, "count"), (CpuCluster, "freq_ghz"), (CpuCluster, "fp32_flops_per_cycle"),
             (CpuCluster, "int8_ops_per_cycle"), (Memory, "size_gb"), (Memory, "bandwidth_gbs"),
             (FrameBudget, "target_fps"), (Cpu, "efficiency"), (DeviceProfile, "sustained_factor")}
_TYPE_NAMES = {int: "int", float: "number", str: "string", bool: "bool", list: "list", dict: "mapping"}


def _type_name(tp) -> str:
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _valid_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _build(cls, data, where: str, path: str):
    """Validate ``data`` against dataclass ``cls`` and build it (recursively)."""
    section = path or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {section!s} must be a mapping of fields, got "
                          f"{type(data).__name__}. Valid fields: {', '.join(_valid_fields(cls))}")
    hints = typing.get_type_hints(cls)
    names = _valid_fields(cls)
    for key in data:
        if key not in names:
            raise ConfigError(
                f"{where}: unknown field {_join(path, key)!r}. Valid fields of "
                f"{'the top level' if not path else repr(path)}: {', '.join(names)}. "
                "Fix the spelling (see device_profiles/SCHEMA.md)")
    kwargs = {}
    for f in dataclasses.fields(cls):
        fpath = _join(path, f.name)
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required field {fpath!r} "
                                  f"({f.metadata.get('doc', '')}). Valid fields of "
                                  f"{'the top level' if not path else repr(path)}: {', '.join(names)}")
            continue
        kwargs[f.name] = _value(cls, f.name, hints[f.name], data[f.name], where, fpath)
    return cls(**kwargs)


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _value(cls, name, tp, value, where, fpath):
    optional = typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp)
    if optional:
        if value is None:
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, fpath)
    ok = (isinstance(value, bool) if tp is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if tp is float else
          isinstance(value, int) and not isinstance(value, bool) if tp is int else
          isinstance(value, tp))
    if not ok:
        raise ConfigError(f"{where}: field {fpath!r} must be {_type_name(tp)}"
                          f"{' or null' if optional else ''}, got {type(value).__name__} {value!r}")
    if tp is float:
        value = float(value)
    if (cls, name) in _ENUMS and value not in _ENUMS[(cls, name)]:
        raise ConfigError(f"{where}: field {fpath!r} is {value!r}; valid values: "
                          f"{', '.join(_ENUMS[(cls, name)])}")
    if (cls, name) in _POSITIVE and not value > 0:
        raise ConfigError(f"{where}: field {fpath!r} must be > 0, got {value!r}")
    if tp is list:
        item = _LIST_ITEMS.get((cls, name), object)
        out = []
        for i, v in enumerate(value):
            if dataclasses.is_dataclass(item):
                out.append(_build(item, v, where, f"{fpath}[{i}]"))
            elif item is not object and not isinstance(v, item):
                raise ConfigError(f"{where}: field {fpath}[{i}] must be {_type_name(item)}, got "
                                  f"{type(v).__name__} {v!r}")
            else:
                out.append(v)
        return out
    return value


def profile_from_dict(data: dict, *, where: str = "<dict>") -> DeviceProfile:
    """Validate a parsed YAML mapping and build a :class:`DeviceProfile`.

    Raises:
        ConfigError: an unknown, missing or mistyped field; the message names ``where`` (the
            file), the field and the valid fields.
    """
    prof = _build(DeviceProfile, data, where, "")
    if prof.schema_version != SCHEMA_VERSION:
        raise ConfigError(f"{where}: schema_version is {prof.schema_version}; this edgepose reads "
                          f"version {SCHEMA_VERSION}")
    if not prof.cpu.clusters:
        raise ConfigError(f"{where}: field 'cpu.clusters' must list at least one cluster")
    if prof.sustained_factor > 1:
        raise ConfigError(f"{where}: field 'sustained_factor' must be in (0, 1], got {prof.sustained_factor}")
    if prof.is_measured and not prof.measured:
        raise ConfigError(f"{where}: a profile with source 'measured' needs the 'measured' mapping "
                          "written by 'edgepose profile'")
    return prof


# -- registry -------------------------------------------------------------------------------
def _shipped() -> dict[str, typing.Any]:
    from importlib import resources

    root = resources.files("edgepose.device_profiles")
    return {p.name[:-5]: p for p in root.iterdir() if p.name.endswith(".yaml")}


def profile_dir() -> Path:
    """Where ``edgepose profile`` writes ``host.yaml``."""
    env = os.environ.get(PROFILE_DIR_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgepose" / "profiles"


def list_profiles() -> list[str]:
    """Names of the shipped device profiles (``host`` included)."""
    return sorted(_shipped())


def load_profile(name_or_path: str | os.PathLike) -> DeviceProfile:
    """Load and validate a device profile by name (see :func:`list_profiles`) or YAML path.

    ``"host"`` reads the profile ``edgepose profile`` wrote to :func:`profile_dir`; when there
    is none it raises with the command that writes it.
    """
    import yaml

    s = os.fspath(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s:
        path = Path(s)
        if not path.is_file():
            raise ConfigError(f"device profile file not found: {s!r}")
        text, where = path.read_text(encoding="utf-8"), path.name
    elif s == "host":
        path = profile_dir() / "host.yaml"
        if not path.is_file():
            raise ConfigError(
                f"no measured host profile at {str(path)!r}. Run 'edgepose profile' to measure "
                f"this machine (or set {PROFILE_DIR_ENV} to the folder holding host.yaml)")
        text, where = path.read_text(encoding="utf-8"), str(path)
    else:
        shipped = _shipped()
        if s not in shipped:
            raise unknown_name("device profile", s, shipped,
                               "Pass one of these names or a path to a profile YAML")
        text, where = shipped[s].read_text(encoding="utf-8"), f"{s}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from exc
    prof = profile_from_dict(data if data is not None else {}, where=where)
    stem = Path(where).stem
    if stem != prof.name and not (s == "host" or s.endswith((".yaml", ".yml")) or os.sep in s):
        raise ConfigError(f"{where}: field 'name' is {prof.name!r} but the file is {stem}.yaml")
    return prof


# -- peaks for the emulator -------------------------------------------------------------------
def host_peaks(measurement, threads: int, runtime: str = "ort"):
    """Roofline peaks of this host at ``threads`` threads from a ``HostMeasurement`` (or the
    ``measured`` mapping of a host profile): linear between the 1-thread and all-core figures.

    Args:
        runtime: ``ort`` or ``litert``: whose measured conv peaks to use (``litert`` falls back
            to onnxruntime's when the LiteRT probe did not run).
    """
    from edgepose.bench.emulator import Peaks

    m = measurement if isinstance(measurement, dict) else dataclasses.asdict(measurement)
    n = max(1, min(int(threads), int(m["usable_cores"])))
    cores = int(m["usable_cores"])

    def interp(one, alln):
        if one is None and alln is None:
            return None
        if one is None:
            return alln * n / cores
        if alln is None or cores == 1:
            return one * n
        return one + (alln - one) * (n - 1) / (cores - 1)

    if runtime not in ("ort", "litert"):
        raise ConfigError(f"runtime must be 'ort' or 'litert', got {runtime!r}")
    pre = "litert_" if runtime == "litert" and m.get("litert_conv_fp32_gflops_1t") else ""
    fp32 = interp(m[pre + "conv_fp32_gflops_1t"], m[pre + "conv_fp32_gflops"])
    int8 = interp(m.get(pre + "conv_int8_gops_1t"), m.get(pre + "conv_int8_gops")) or fp32
    llc, cbw = m.get("llc_bytes"), m.get("cache_bandwidth_gbs")
    cache = (llc / 2, cbw) if llc and cbw else (None, None)  # half the LLC: source + destination
    return Peaks(fp32, int8, m["mem_bandwidth_gbs"], n, *cache)


def target_peaks(profile: DeviceProfile, threads: int, runtime: str = "ort"):
    """Roofline peaks of ``profile`` with ``threads`` threads capped at its cores: theoretical x
    ``cpu.efficiency`` x ``sustained_factor`` (measured profiles: their measured peaks)."""
    if profile.is_measured:
        return host_peaks(profile.measured, threads, runtime)
    from edgepose.bench.emulator import Peaks

    n = max(1, min(int(threads), profile.cpu.cores))
    k = profile.cpu.efficiency * profile.sustained_factor
    return Peaks(profile.cpu.peak_gflops("fp32", n) * k, profile.cpu.peak_gflops("int8", n) * k,
                 profile.memory.bandwidth_gbs, n)


def host_profile_from_measurement(m, *, name: str = "host") -> DeviceProfile:
    """A ``source: measured`` profile from a :class:`~edgepose.bench.hostprobe.HostMeasurement`."""
    d = dataclasses.asdict(m)
    ghz = (m.freq_mhz or 1000.0) / 1000.0
    c1 = m.conv_fp32_gflops_1t
    q1 = m.conv_int8_gops_1t or c1
    arch = m.arch
    dot = any(f in m.isa_flags for f in ("asimddp", "avx512_vnni", "avx_vnni"))
    return DeviceProfile(
        schema_version=SCHEMA_VERSION, name=name,
        description=f"{m.cpu_model}, {m.usable_cores} usable cores (measured by edgepose profile)",
        source="measured",
        cpu=Cpu(name=m.cpu_model, arch=arch, isa=list(m.isa_flags), int8_dot_product=dot,
                clusters=[CpuCluster(core=m.cpu_model, count=m.usable_cores, freq_ghz=round(ghz, 3),
                                     fp32_flops_per_cycle=round(c1 / ghz, 2),
                                     int8_ops_per_cycle=round(q1 / ghz, 2))],
                efficiency=1.0),
        memory=Memory(size_gb=m.mem_total_gb, bandwidth_gbs=round(m.mem_bandwidth_gbs, 2)),
        runtimes=Runtimes(ort_providers=_ort_providers(), litert_delegates=["xnnpack"]),
        sustained_factor=1.0, frame_budget=FrameBudget(target_fps=30.0),
        networks=[NetworkLink("loopback", 10000.0, 10000.0, 0.05, 0.01, 0.0)],
        measured=d)


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except ImportError:
        return []


def dump_profile_yaml(profile: DeviceProfile, header: str = "") -> str:
    """YAML text of a profile (round-trips through :func:`profile_from_dict`)."""
    import yaml

    body = yaml.safe_dump(profile.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    return (header + "\n" if header else "") + body


__all__ = ["DeviceProfile", "Cpu", "CpuCluster", "Memory", "Accelerator", "Runtimes", "FrameBudget",
           "NetworkLink", "Power", "list_profiles", "load_profile", "profile_from_dict",
           "profile_dir", "host_peaks", "target_peaks", "host_profile_from_measurement",
           "dump_profile_yaml", "PROFILE_DIR_ENV", "SCHEMA_VERSION"]
