"""``edgepose bench``: run a benchmark suite (benchmarks/*.yaml), optionally emulating a device."""

from __future__ import annotations

from edgepose.cli import _args

NAME = "bench"
HELP = "run a benchmark suite: latency percentiles, memory, accuracy gate, A/B, video; JSON + Markdown + plots"


def add_arguments(p):
    p.add_argument("suite", type=_args.text_file("suite"), help="suite YAML, e.g. benchmarks/baselines.yaml")
    p.add_argument("--device", help="device profile to emulate (name or YAML path); default: measure this host")
    p.add_argument("--out", type=_args.output_dir, help="output folder for results.json, results.md and the plots")
    p.add_argument("--ab", nargs=2, metavar=("A", "B"), help="run two cases interleaved and report A/B ratios")
    p.add_argument("--pairs", type=_args.int_range(1), default=40, help="A/B pairs (default 40)")
    p.add_argument("--assets", type=_args.existing_dir("assets folder"), help="root holding models/ and data/ (suite paths and accuracy data resolve here)")
    p.add_argument("--runs", type=_args.int_range(1), help="override every case's timed runs")
    p.add_argument("--only", nargs="+", metavar="CASE", help="run only these cases")
    p.add_argument("--no-accuracy", action="store_true", help="skip the accuracy evaluations")
    p.add_argument("--no-video", action="store_true", help="skip the video entries")
    p.add_argument("--host-profile", type=_args.text_file("host profile"), help="take host peaks from this saved host profile instead of measuring")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from edgepose.bench.report import markdown, write_report
    from edgepose.bench.runner import BenchOptions, run_suite
    from edgepose.bench.suite import load_suite

    suite = load_suite(args.suite)
    if args.device:  # a bad profile name fails before any model loads
        from edgepose.profiles import load_profile

        load_profile(args.device)
    opts = BenchOptions(device=args.device, assets=args.assets, host_profile=args.host_profile,
                        accuracy=False if args.no_accuracy else None, runs=args.runs, only=args.only,
                        ab=tuple(args.ab) if args.ab else None, ab_pairs=args.pairs,
                        progress=not args.no_progress, video=not args.no_video)
    doc = run_suite(suite, opts)
    print(markdown(doc))
    if args.out:
        for kind, path in write_report(doc, args.out, plots=not args.no_plots).items():
            print(f"wrote {kind}: {path}")
    return 1 if doc["failed"] else 0
