"""Latency of model files as ratios to a baseline, interleaved, per round (issue-4 speed targets).

Each round runs every model ``per_round`` times (order reversed every other round, runtime
threads not spinning); a model's ratio for that round is its median over the baseline's median
in the same round. The report is the median ratio over rounds with its quartiles, at each thread
count: on these noisy shared hosts (+-30 %) a within-round ratio is steadier than two medians
taken over the whole run (``compression_frontier.py variants`` reports those).

    python benchmarks/latency_ratio.py --baseline official=$EDGEPOSE_ASSETS/models/movenet/movenet_lightning_int8.tflite \\
        ours=runs/compress_variants/lightning_int8.tflite --name lightning_int8_tflite_ratio

Writes benchmarks/results/NAME.{json,md} (--out DIR to change the folder).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from _common import add_out_arg, run_meta, write_report

from edgepose.compression.latency import interleaved_latency


def _pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FILE (e.g. ours=runs/x/model.tflite)")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path!r} (model {name!r}) is not a file")
    return name, path


def round_ratios(samples: dict[str, list[float]], baseline: str, per_round: int) -> dict[str, list[float]]:
    """Per-round ratio of each model's median to the baseline's median in that round."""
    base = np.asarray(samples[baseline]).reshape(-1, per_round)
    out = {}
    for name, s in samples.items():
        if name != baseline:
            a = np.asarray(s).reshape(-1, per_round)
            out[name] = list(np.median(a, axis=1) / np.median(base, axis=1))
    return out


def summarise(r: list[float]) -> dict:
    q25, q50, q75 = np.percentile(r, [25, 50, 75])
    return {"median": round(float(q50), 3), "q25": round(float(q25), 3), "q75": round(float(q75), 3),
            "rounds": len(r)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=_pair, required=True, help="NAME=FILE the ratios divide by")
    p.add_argument("models", type=_pair, nargs="+", help="NAME=FILE (.onnx on ONNX Runtime, .tflite on LiteRT)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--per-round", type=int, default=5)
    p.add_argument("--name", default="latency_ratio", help="report name: OUT/NAME.json and .md")
    add_out_arg(p)
    p.add_argument("--speedup", action="append", default=[], metavar="SLOW/FAST",
                   help="also report the per-round speed-up of model FAST over model SLOW (median of "
                        "SLOW median / FAST median per round), e.g. fp32/int8; repeatable")
    a = p.parse_args(argv)
    base_name, _ = a.baseline
    models = dict([a.baseline] + a.models)
    if len(models) != len(a.models) + 1:
        p.error("model names must be distinct")
    pairs = []
    for sp in a.speedup:
        slow, sep, fast = sp.partition("/")
        if not sep or slow not in models or fast not in models:
            p.error(f"--speedup {sp!r} must be SLOW/FAST with both names among {sorted(models)}")
        pairs.append((slow, fast))
    report = {"baseline": base_name, "models": models, "rounds": a.rounds, "per_round": a.per_round,
              "load_before": round(os.getloadavg()[0], 2), **run_meta(), "threads": {}}
    for th in a.threads:
        lat = interleaved_latency(models, rounds=a.rounds, per_round=a.per_round, threads=th)
        ratios = round_ratios({n: r.samples for n, r in lat.items()}, base_name, a.per_round)
        report["threads"][str(th)] = {"p50_ms": {n: round(r.p50, 3) for n, r in lat.items()},
                                      "ratio_to_baseline": {n: summarise(r) for n, r in ratios.items()},
                                      "speedup": {f"{sl}/{fa}": summarise(round_ratios(
                                          {sl: lat[sl].samples, fa: lat[fa].samples}, fa, a.per_round)[sl])
                                          for sl, fa in pairs}}
    report["load_after"] = round(os.getloadavg()[0], 2)
    lines = [f"# Latency relative to {base_name} (interleaved, per-round ratios)", "",
             f"{a.rounds} rounds x {a.per_round} runs per model; ratio = model median / {base_name} median in "
             f"the same round; median (q25-q75) over rounds. Load {report['load_before']} before, "
             f"{report['load_after']} after; {report['cpus']} CPUs.", "",
             "| model | threads | p50 ms | ratio to baseline |", "|---|---:|---:|---|"]
    for th, d in report["threads"].items():
        lines.append(f"| {base_name} | {th} | {d['p50_ms'][base_name]:.2f} | 1 |")
        for n, s in d["ratio_to_baseline"].items():
            lines.append(f"| {n} | {th} | {d['p50_ms'][n]:.2f} | **{s['median']:.3f}** ({s['q25']:.3f}-{s['q75']:.3f}) |")
    if pairs:
        lines += ["", "| speed-up (per-round SLOW / FAST) | threads | median (q25-q75) |", "|---|---:|---|"]
        for th, d in report["threads"].items():
            for k, s in d["speedup"].items():
                lines.append(f"| {k} | {th} | **{s['median']:.3f}x** ({s['q25']:.3f}-{s['q75']:.3f}) |")
    write_report(a.out, a.name, report, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
