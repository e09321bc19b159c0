"""Temporal quality: learned smoother vs One Euro, keyframes + recovery vs linear interpolation.

Runs the per-frame edge model (MoveNet Lightning int8) in video mode on the evaluation clips
(pose_1, pose_squats, body3d_demo 299-398), post-processes its track with every method and
scores it against the clip's reference (``edgepose.eval.temporal_report``); then times the
temporal models alone per frame (warm-up, then p50 / p90 / p99 over every frame of the clips).

One Euro rows, all at zero delay (the delay of ``learned d=0``):

* ``one-euro default``: the SDK's defaults (tuned on the training clips), run end to end.
* ``one-euro constrained``: the accel-optimal setting of a finer grid among those adding
  <= 0.5 px of position error, chosen on the training clips and applied here.
* ``one-euro oracle``: the same search run on each evaluation clip itself (tuned on the test
  data: an upper bound for One Euro, not a deployable setting).

The summary compares the learned smoother at d=0 and d=2 with the One Euro rows per clip, and
with "One Euro at matched position error": the lowest acceleration error any One Euro setting of
the grid reaches on that clip without a higher position error than the learned smoother's (an
oracle too; it asks whether the learned smoother is better than One Euro at equal accuracy, not
just at a different point of the accuracy / smoothness trade-off).

Usage (from the repository root; the assets folder from $EDGEPOSE_ASSETS or --assets):
    python benchmarks/temporal_eval.py [--extra-smoother acc3=runs/temporal_models/smoother_acc3.onnx]

Writes benchmarks/results/temporal_eval.{json,md} (--out DIR to change the folder).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
from _common import add_assets_arg, add_out_arg, run_meta, use_assets, write_report

MARGIN_PX = 0.5


def one_euro_grid(name: str, cache_dir: str, assets: Path) -> list[tuple]:
    """Every One Euro setting of ``baselines.FINE_GRID`` on evaluation clip ``name``:
    [(TemporalMetrics, OneEuroConfig)], run as the estimator runs it (ROI side as scale)."""
    from edgepose.compression.temporal.baselines import FINE_GRID
    from edgepose.eval.jitter import temporal_metrics
    from edgepose.eval.temporal import EVAL_CLIPS, cached_model_track, reference_track
    from edgepose.video.sources import video_size
    from edgepose.video.tracks import one_euro_track, roi_sides
    from edgepose.video.one_euro import OneEuroConfig

    clip = EVAL_CLIPS[name]
    ref = reference_track(clip, assets=assets, cache_dir=cache_dir).astype(np.float64)
    raw = cached_model_track(cache_dir, "movenet-lightning-int8", assets / clip.video,
                             start=clip.start, stop=clip.stop)
    scales = roi_sides(raw.keypoints, raw.scores, video_size(assets / clip.video))
    out = []
    for mc, beta, dc in itertools.product(FINE_GRID["min_cutoff"], FINE_GRID["beta"], FINE_GRID["d_cutoff"]):
        cfg = OneEuroConfig(mc, beta, dc)
        out.append((temporal_metrics(one_euro_track(raw.keypoints, raw.fps, cfg, scales), ref, raw.fps), cfg))
    return out


def best_under(grid: list[tuple], max_pos: float):
    """The lowest-accel entry of ``grid`` whose position error is <= ``max_pos`` (None: none)."""
    ok = [g for g in grid if g[0].position_error <= max_pos]
    return min(ok, key=lambda g: g[0].accel_error) if ok else None


def oracle_row(name: str, grid: list[tuple], raw_pos: float) -> dict:
    m, cfg = best_under(grid, raw_pos + MARGIN_PX)
    return {"clip": name, "method": "one-euro oracle", "delay_frames": 0, "delay_ms": 0.0,
            **m.to_dict(), "ms_per_frame": None,
            "params": {"min_cutoff": cfg.min_cutoff, "beta": cfg.beta, "d_cutoff": cfg.d_cutoff}}


def summarise(rows: list[dict], clips, labels=("learned",), grids=None) -> tuple[list[dict], str]:
    """Per clip and learned model: the issue's criteria and the comparison with One Euro.

    ``vs one-euro matched pos`` (from ``grids``, the clip's One Euro grid): the lowest
    acceleration error any One Euro setting reaches on this clip without a higher position
    error than the learned smoother's (tuned on the test clip: the strongest One Euro at the
    same accuracy); None when no setting is that accurate.
    """
    out = []
    ref_methods = ("one-euro default", "one-euro constrained", "one-euro oracle")
    for name in clips:
        by = {r["method"]: r for r in rows if r["clip"] == name}
        raw = by["raw"]
        for label in labels:
            for d in (0, 2):
                r = by.get(f"{label} d={d}")
                if r is None:
                    continue
                s = {"clip": name, "method": r["method"], "accel_error": r["accel_error"],
                     "position_error": r["position_error"],
                     "accel_cut_vs_raw_pct": round(100 * (1 - r["accel_error"] / raw["accel_error"]), 1),
                     "pos_vs_raw_px": round(r["position_error"] - raw["position_error"], 2)}
                s["issue_criterion"] = s["accel_cut_vs_raw_pct"] >= 50 and s["pos_vs_raw_px"] <= MARGIN_PX
                for oe in ref_methods:
                    o = by.get(oe)
                    if o is not None:
                        s[f"vs {oe}"] = {"accel_lower": r["accel_error"] < o["accel_error"],
                                         "pos_lower": r["position_error"] < o["position_error"],
                                         "accel": o["accel_error"], "pos": o["position_error"]}
                if grids is not None:
                    b = best_under(grids[name], r["position_error"])
                    s["vs one-euro matched pos"] = None if b is None else {
                        "accel_lower": r["accel_error"] < b[0].accel_error,
                        "accel": round(b[0].accel_error, 4), "pos": round(b[0].position_error, 4),
                        "params": {"min_cutoff": b[1].min_cutoff, "beta": b[1].beta, "d_cutoff": b[1].d_cutoff}}
                out.append(s)
    md = ["| clip | method | accel err | pos err px | accel cut vs raw | pos vs raw px | "
          "issue (>=50 %, <=+0.5 px) | vs one-euro default: accel / pos lower | vs constrained | "
          "vs oracle | vs One Euro at matched pos (oracle): its accel |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    yn = lambda v: "yes" if v else "**no**"  # noqa: E731
    for s in out:
        cells = [s["clip"], s["method"], f"{s['accel_error']:.2f}", f"{s['position_error']:.2f}",
                 f"{s['accel_cut_vs_raw_pct']:.1f} %", f"{s['pos_vs_raw_px']:+.2f}", yn(s["issue_criterion"])]
        for oe in ref_methods:
            v = s.get(f"vs {oe}")
            cells.append("-" if v is None else f"{yn(v['accel_lower'])} / {yn(v['pos_lower'])}")
        v = s.get("vs one-euro matched pos", "absent")
        if v == "absent":
            cells.append("-")
        elif v is None:
            cells.append("none as accurate: yes")
        else:
            cells.append(f"{v['accel']:.2f} (pos {v['pos']:.2f}): {yn(v['accel_lower'])}")
        md.append("| " + " | ".join(cells) + " |")
    return out, "\n".join(md)


def latency(n_frames: int = 300, repeats: int = 3) -> dict:
    """Per-frame wall time of the temporal models alone (synthetic poses; the cost does not
    depend on the values)."""
    from edgepose.eval.keyframes import KeyframeOptions, KeyframeRecovery
    from edgepose.video.smoother import LearnedSmoother, SmootherOptions

    rng = np.random.default_rng(0)
    poses = 200 + np.cumsum(rng.normal(0, 2, size=(n_frames, 17, 2)), axis=0)
    out = {}
    with LearnedSmoother(SmootherOptions(delay=0)) as sm:
        ms = []
        for r in range(repeats + 1):
            sm.reset()
            for i, p in enumerate(poses):
                t0 = time.perf_counter()
                sm.push(p, 33 * i)
                if r:
                    ms.append((time.perf_counter() - t0) * 1e3)
        out["smoother_push"] = ms
    for k in (3, 5):
        with KeyframeRecovery(KeyframeOptions(interval=k)) as rec:
            ms = []
            for r in range(repeats + 1):
                rec.reset()
                for i, p in enumerate(poses):
                    key = rec.is_keyframe()
                    t0 = time.perf_counter()
                    rec.push(p if key else None, 33 * i)
                    if r:
                        ms.append((time.perf_counter() - t0) * 1e3)
            out[f"recovery_k{k}_push"] = ms
    return {k: {"mean": float(np.mean(v)), "p50": float(np.percentile(v, 50)),
                "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)), "n": len(v)}
            for k, v in out.items()}


def _train_note(path: str) -> str:
    """The training recipe recorded in a smoother's ONNX metadata, in a few words."""
    try:
        import onnxruntime as ort

        meta = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        t = json.loads(meta.get("edgepose.train", "{}")).get("train", {})
        return ", ".join(f"{k} {t[k]}" for k in ("accel_weight", "zero_lag_prob", "steps", "emit_frames")
                         if k in t)
    except Exception as e:  # noqa: BLE001 - a note only
        return f"no training metadata: {e}"


def main(argv=None) -> int:
    from edgepose.eval.temporal_report import TemporalEvalOptions, evaluate_temporal, format_table
    from edgepose.video.one_euro import OneEuroConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_assets_arg(p)
    add_out_arg(p)
    p.add_argument("--cache-dir", default="runs/temporal_tracks")
    p.add_argument("--smoother", default=None, help="smoother .onnx (default: the shipped one)")
    p.add_argument("--recovery", default=None, help="recovery .onnx (default: the shipped one)")
    p.add_argument("--extra-smoother", action="append", default=[], metavar="LABEL=PATH",
                   help="another smoother .onnx reported beside (rows 'learned[LABEL] d=N'); repeatable")
    p.add_argument("--no-latency", action="store_true", help="skip the per-frame timing")
    a = p.parse_args(argv)
    assets = use_assets(a.assets).resolve()
    extra = dict(e.split("=", 1) for e in a.extra_smoother)
    load0 = os.getloadavg()
    opts = TemporalEvalOptions(assets=str(assets), cache_dir=a.cache_dir, smoother_path=a.smoother,
                               recovery_path=a.recovery, extra_smoothers=extra)
    rows = evaluate_temporal(opts)
    grids = {}
    for name in opts.clips:
        grids[name] = one_euro_grid(name, a.cache_dir, assets)
        raw_pos = next(r["position_error"] for r in rows if r["clip"] == name and r["method"] == "raw")
        i = max(j for j, r in enumerate(rows) if r["clip"] == name and r["method"] == "one-euro constrained")
        rows.insert(i + 1, oracle_row(name, grids[name], raw_pos))
    summary, summary_md = summarise(rows, opts.clips, ("learned",) + tuple(f"learned[{k}]" for k in extra),
                                    grids)
    lat = {} if a.no_latency else latency()
    table = format_table(rows)
    d = OneEuroConfig()
    c = opts.one_euro
    oracle = {r["clip"]: r["params"] for r in rows if r["method"] == "one-euro oracle"}
    meta = {**run_meta(), "loadavg_start": load0, "loadavg_end": os.getloadavg(), "threads": 1,
            "model": opts.model, "one_euro_default": d.__dict__, "one_euro_constrained": c.__dict__,
            "one_euro_oracle": oracle, "smoother": a.smoother or "edgepose/data/smoothnet_w32.onnx",
            "extra_smoothers": extra}
    lat_md = "\n".join(f"| {k} | {v['mean']:.3f} | {v['p50']:.3f} | {v['p90']:.3f} | {v['p99']:.3f} |"
                       for k, v in lat.items())
    oracle_md = "; ".join(f"{k}: {v['min_cutoff']:g} Hz, beta {v['beta']:g}, d_cutoff {v['d_cutoff']:g}"
                          for k, v in oracle.items())
    md = (f"# Temporal quality on the evaluation clips\n\n"
          f"`python benchmarks/temporal_eval.py` (per-frame model: Lightning int8, one thread; reference: "
          f"pose_1.json, pose_squats.full.json, Thunder teacher track for body3d 299-398). "
          f"Load average {load0[0]:.1f} at start: timings are noisy.\n\n"
          f"One Euro (all zero delay): default = the SDK's defaults ({d.min_cutoff:g} Hz, beta {d.beta:g}, "
          f"d_cutoff {d.d_cutoff:g}), tuned on the training clips, run end to end; constrained = "
          f"{c.min_cutoff:g} Hz, beta {c.beta:g}, d_cutoff {c.d_cutoff:g}, the accel-optimal setting among "
          f"those adding <= 0.5 px of position error on the training clips "
          f"(`python -m edgepose.compression.temporal.baselines`); oracle = the same search on each "
          f"evaluation clip itself (an upper bound, not deployable): {oracle_md}.\n\n"
          + "".join(f"`learned[{k}]`: {v} ({_train_note(v)}).\n\n" for k, v in extra.items())
          + f"{table}\n\n"
          f"## Learned smoother vs raw and One Euro\n\n{summary_md}\n")
    if lat:
        md += (f"\n## Temporal model time per frame (ms)\n\n"
               f"| stage | mean | p50 | p90 | p99 |\n|---|---|---|---|---|\n{lat_md}\n")
    write_report(a.out, "temporal_eval", {"meta": meta, "rows": rows, "summary": summary, "latency_ms": lat}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
