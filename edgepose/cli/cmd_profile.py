"""``edgepose profile``: measure this machine into a ``host`` device profile; list, show,
validate and calibrate profiles."""

from __future__ import annotations

from edgepose.cli import _args

NAME = "profile"
HELP = "measure this machine into a host device profile; list / show / calibrate profiles"


def add_arguments(p):
    p.add_argument("--out", type=_args.output_file, help="write the host profile here (default: $EDGEPOSE_PROFILE_DIR/host.yaml "
                                 "or ~/.cache/edgepose/profiles/host.yaml)")
    p.add_argument("--repeats", type=_args.int_range(1, 1000), default=15, help="timed repeats per probe; the best is kept")
    p.add_argument("--list", action="store_true", help="list the device profiles and exit")
    p.add_argument("--show", metavar="PROFILE", help="print a profile (name or YAML path) with its derived peaks")
    p.add_argument("--validate", action="store_true", help="validate every shipped profile and exit")
    p.add_argument("--calibrate", metavar="PROFILE",
                   help="fit PROFILE's cpu.efficiency on a published latency (prints it; edits nothing)")
    p.add_argument("--point", default=None, help="calibration point (default: movenet_thunder_fp16)")
    p.add_argument("--assets", type=_args.existing_dir("assets folder"), help="root holding models/ (for MoveNet calibration points)")


def run(args) -> int:
    from edgepose import profiles as P

    if args.list:
        for name in P.list_profiles():
            try:
                prof = P.load_profile(name)
                print(f"{name:18s} {prof.description}")
            except Exception as exc:  # host without a measured profile yet
                print(f"{name:18s} ({exc})")
        return 0
    if args.validate:
        for name in P.list_profiles():
            path = P._shipped()[name]
            P.load_profile(str(path))
            print(f"ok  {name}")
        return 0
    if args.show:
        prof = P.load_profile(args.show)
        print(P.dump_profile_yaml(prof).rstrip())
        print(f"# derived: {prof.cpu.cores} cores; theoretical peak fp32 {prof.cpu.peak_gflops('fp32'):.1f} "
              f"GFLOP/s, int8 {prof.cpu.peak_gflops('int8'):.1f} GOP/s; emulator peaks (all cores): "
              f"{P.target_peaks(prof, prof.cpu.cores)}; frame budget {prof.frame_budget.frame_ms:.1f} ms")
        return 0
    from edgepose.bench.hostprobe import ProbeOptions, probe_host

    prof = P.load_profile(args.calibrate) if args.calibrate else None  # a bad name fails before the probe
    m = probe_host(ProbeOptions(repeats=args.repeats))
    if args.calibrate:
        from edgepose.bench.calibrate import DEFAULT_POINT, calibrate_efficiency

        c = calibrate_efficiency(prof, m, point=args.point or DEFAULT_POINT, assets=args.assets)
        print(f"{prof.name}: cpu.efficiency = {c.efficiency:.3f}  (fitted on {c.point}: published "
              f"{c.published_ms:g} ms at {c.threads} threads, host {c.host_ms:.2f} ms; {c.source})")
        for chk in c.checks:
            print(f"  check {chk['point']}: emulated {chk['emulated_ms']:.1f} ms vs published "
                  f"{chk['published_ms']:g} ms -> ratio {chk['ratio']:.2f}")
        print(f"  host load average during calibration: {m.load_avg_1m:.2f} on {m.usable_cores} cores")
        return 0
    from pathlib import Path

    prof = P.host_profile_from_measurement(m)
    out = Path(args.out) if args.out else P.profile_dir() / "host.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Measured by `edgepose profile` (edgepose.bench.hostprobe): every number below is\n"
              "# measured on this machine. Methods: see edgepose/bench/hostprobe.py.")
    out.write_text(P.dump_profile_yaml(prof, header), encoding="utf-8")
    P.load_profile(str(out))  # what we wrote must read back
    print(f"host: {m.cpu_model}, {m.usable_cores} usable cores, ISA {' '.join(m.isa_flags) or '-'}")
    print(f"  numpy GEMM fp32: {m.gemm_fp32_gflops:.1f} GFLOP/s all cores"
          + (f", {m.gemm_fp32_gflops_1t:.1f} 1 thread" if m.gemm_fp32_gflops_1t else ""))
    print(f"  onnxruntime conv fp32: {m.conv_fp32_gflops_1t:.1f} (1 thread) / {m.conv_fp32_gflops:.1f} GFLOP/s")
    if m.conv_int8_gops:
        print(f"  onnxruntime conv int8: {m.conv_int8_gops_1t:.1f} (1 thread) / {m.conv_int8_gops:.1f} GOP/s")
    if m.litert_conv_fp32_gflops:
        print(f"  LiteRT conv fp32: {m.litert_conv_fp32_gflops_1t:.1f} / {m.litert_conv_fp32_gflops:.1f} GFLOP/s; "
              f"int8: {m.litert_conv_int8_gops_1t:.1f} / {m.litert_conv_int8_gops:.1f} GOP/s")
    print(f"  memory copy bandwidth (1 thread): {m.mem_bandwidth_gbs:.1f} GB/s; load avg {m.load_avg_1m:.2f}")
    print(f"wrote {out}")
    return 0
