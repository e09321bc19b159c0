"""End-to-end video benchmark of the cloud-edge runtime under emulated links.

Each run plays a clip at its frame rate (frames arrive on a real-time clock; the loop never
waits on the network: ``CloudEdgeRuntime.push`` / ``poll``) with the teacher served in-process
on loopback, and reports per run: share of frames offloaded, share answered on time by the
cloud, late answers, deadline misses, share within budget, latency p50/p99, sustained fps, and
PCK@0.2 x torso against the clip's reference, also as a percentage of the teacher's PCK.

What is real and what is emulated (written into every report):

* edge model: measured on this host (not emulated for the device profile);
* server: the teacher really runs, in this process, on the same shared CPU cores;
* link: emulated in the client transport (bandwidth, RTT, jitter, loss of the profile's link);
* budget: the device profile's frame budget.

Clips (``--clip``): the evaluation clips ``pose_1`` and ``pose_squats`` (their reference
tracks), ``body3d_eval`` (body3d_demo frames 299-398) and ``vtest_eval`` (vtest frames
600-794) with the teacher's track as reference; the training clips ``body3d_train`` (0-298)
and ``vtest_train`` (0-599) are where the policy's settings were chosen (``--calibrate``: a
timing-free evaluation of target rates and of late answers; it refuses the evaluation clips).

Whom the single-person tracker follows (``--person-selection``, ``EstimatorOptions.person_selection``):
``model`` (the estimator's default: when there is no track a full-frame pass of the model itself
picks someone) or ``nearest`` (the MoveNet MultiPose person detector lists everyone; the person
nearest the last track, else the largest; jumps onto another person and server answers of another
person are refused). The teacher reference, the server model's own run and the timing-free bound
use the same protocol as the edge runs, so on a multi-person clip all start on the same person.
The multi-person evaluation clips are reported with ``nearest`` (``offload_<clip>.*``) and, for
comparison, with the old ``model`` protocol (``--suffix _model``: ``offload_<clip>_model.*``).

    python benchmarks/offload_video.py --clip pose_1
    python benchmarks/offload_video.py --clip vtest_eval body3d_eval --person-selection nearest \
        --repeat 3 --seed 4 --timing-free
    python benchmarks/offload_video.py --clip body3d_train --calibrate
    python benchmarks/offload_video.py --summary      # the table of docs/results.md, from the reports

Reports go to benchmarks/results/ (--out DIR); the assets folder from $EDGEPOSE_ASSETS or --assets.
Timings on shared machines are noisy (+-30 %).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from pathlib import Path

import numpy as np
from _common import add_assets_arg, add_out_arg, use_assets
from _offload import (
    CLIPS,
    DEFAULT_RUNS,
    EDGES,
    INT8_NAME,
    VARIANTS,
    build_int8_teacher,
    calibrate,
    load_clip,
    log,
    measure_server_models,
    options_for,
    pck_of,
    play_realtime,
    run_teacher,
    same_person_share,
    start_server,
    summarize,
    timeline,
    video_options,
    write_calibration,
)

from edgepose.offload.runtime import CloudEdgeRuntime
from edgepose.profiles import load_profile
from edgepose.version import __version__


def run_one(args, spec: str, frames, fps: float) -> tuple[dict, list]:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in EDGES:
        raise SystemExit(f"run spec {spec!r} must be EDGE:LINK[:VARIANT] with EDGE one of {', '.join(EDGES)}")
    edge, link, variant = parts[0], parts[1], parts[2] if len(parts) == 3 else "default"
    opts = options_for(variant, args.budget_ms)
    server = None if link == "none" else (args.server_url or "embedded")
    served = args.teacher if args.served == args.teacher else f"{args.served}={args.served_path}"
    rt = CloudEdgeRuntime.create(EDGES[edge], server=server, teacher=served,
                                 link=link, profile=args.profile if link not in ("none", "loopback") else None,
                                 seed=args.seed, options=opts, num_threads=args.threads,
                                 server_threads=args.server_threads,
                                 estimator_options=video_options(args.person_selection))
    with rt:
        results, wall = play_realtime(rt, frames, fps)
        s = rt.summary()
        trace = rt.offload_trace()
        srv = {}
        if rt.client is not None:  # answer times as measured by the client (server real, link emulated)
            srv = {"server_ms_p50": round(rt.client.server_ms.percentile(50), 1),
                   "network_ms_p50": round(rt.client.network_ms.percentile(50), 1)}
    assert [r.frame_index for r in results] == list(range(len(frames))), "one result per frame, in order"
    b = s["budget"]
    c = s.get("client", {})
    row = {"run": spec, "edge": EDGES[edge], "link": link, "variant": variant, "frames": s["frames"],
           "offload_share": round(s.get("offload_share", 0.0), 4), "cloud_share": round(s["cloud_share"], 4),
           "late_answers": c.get("late", 0), "lost_or_failed": c.get("lost", 0) + c.get("errors", 0) + c.get("busy", 0),
           "late_reseeds": s["late_reseeds"], "identity_rejects": s.get("identity_rejects", 0),
           "deadline_misses": b["deadline_misses"],
           "within_budget": b["within_budget"], "p50_ms": round(b["frame_ms"]["p50"], 1),
           "p99_ms": round(b["frame_ms"]["p99"], 1), "fps": round(len(frames) / wall, 1),
           "edge_ms_p50": round(b["stages_ms"].get("edge", {}).get("p50", float("nan")), 1),
           "hold_ms": s["hold_ms"], "sources": s["sources"], "client": c, "policy": s["policy"],
           "control": s["control"], "network": s["network"], "keyframe_interval": s["keyframe_interval"]}
    row.update(srv)
    row["offload_trace"] = trace
    held = {t["frame"] for t in trace}
    row["missed"] = [{"frame": r.frame_index, "latency_ms": round(r.timings_ms.get("latency", float("nan")), 1),
                      "edge_ms": round(r.timings_ms.get("edge", 0.0), 1), "source": r.source.value,
                      "held": r.frame_index in held} for r in results if not r.deadline_met]
    return row, [r.pose.keypoints if r.pose else None for r in results]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", nargs="+", default=["pose_1"], choices=sorted(CLIPS),
                    help="clips to run (one report each; --calibrate pools them into one report)")
    ap.add_argument("--teacher", default="movenet-thunder-fp32",
                    help="the reference-quality model: PCK is reported as a share of its PCK")
    ap.add_argument("--server-model", choices=("int8", "teacher"), default="int8",
                    help="what the server runs: int8 = the teacher quantised to int8 (ORT static QDQ, calibrated "
                         "on training-clip crops only; built once into --cache), teacher = the teacher itself")
    ap.add_argument("--cache", default=str(Path(__file__).resolve().parents[1] / "runs" / "cache" / "offload"),
                    help="folder for the int8 server model")
    ap.add_argument("--profile", default="rpi4", help="device profile: links and frame budget")
    ap.add_argument("--runs", nargs="+", default=None,
                    help=f"EDGE:LINK[:VARIANT] (edge {', '.join(EDGES)}; variants {', '.join(VARIANTS)}); "
                         f"default: {' '.join(DEFAULT_RUNS)}")
    ap.add_argument("--ablations", action="store_true",
                    help="add int8:ethernet, and int8:wifi with the post, threshold, nohold, reseed and fixed variants")
    ap.add_argument("--calibrate", action="store_true",
                    help="training clips only: timing-free evaluation of target rates and late answers")
    ap.add_argument("--timing-free", action="store_true",
                    help="also report the default policy with every answer on time (no clock): the bound a "
                         "fast server would reach; nothing is chosen from it")
    ap.add_argument("--repeat", type=int, default=1, help="play each run this many times (seeds seed..seed+n-1)")
    ap.add_argument("--threads", type=int, default=1, help="edge model threads")
    ap.add_argument("--server-threads", type=int, default=1,
                    help="server model threads (1: on 2 shared cores, 2 threads were slower: 45 vs 24 ms)")
    ap.add_argument("--server", choices=("process", "embedded"), default="process",
                    help="process: `edgepose serve` in a separate process on loopback (its own interpreter, as a "
                         "real server would be); embedded: in this process (shares the GIL with the frame loop)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--person-selection", choices=("model", "nearest"), default="model",
                    help="EstimatorOptions.person_selection for the edge, the teacher reference, the server model's "
                         "own run and the bound: model = the model's own full-frame pick when there is no track "
                         "(old protocol); nearest = MoveNet MultiPose detector, nearest the track else the largest, "
                         "identity guard")
    ap.add_argument("--suffix", default="", help="appended to the report names: offload_<clip><suffix>.json/.md")
    add_out_arg(ap)
    add_assets_arg(ap)
    ap.add_argument("--summary", action="store_true",
                    help="only write <out>/offload_summary.md from the evaluation clips' reports there")
    ap.add_argument("--server-models", action="store_true",
                    help="only measure the invoke time of the server model candidates (fp32 / int8, 1 / 2 threads)")
    ap.add_argument("--rounds", type=int, default=20, help="--server-models: interleaved rounds")
    args = ap.parse_args(argv)
    args.root = use_assets(args.assets)
    logging.basicConfig(level=logging.WARNING)
    if args.server_models:
        return measure_server_models(args)
    if args.summary:
        print(summarize(args.out))
        return 0
    prof = load_profile(args.profile)
    args.budget_ms = prof.frame_budget.frame_ms
    if args.calibrate:
        bad = [c for c in args.clip if CLIPS[c][4] != "training"]
        if bad:
            raise SystemExit(f"--calibrate chooses policy settings: run it on training clips "
                             f"({', '.join(k for k, v in CLIPS.items() if v[4] == 'training')}), not {', '.join(bad)}")
        args.served, args.served_path = args.teacher, args.teacher
        if args.server_model == "int8":
            args.served, args.served_path = INT8_NAME, str(build_int8_teacher(args))
        rows = []
        for clip in args.clip:
            frames, fps, ref, teacher_pck = load_clip(args, clip)
            rows += [dict(r, clip=clip) for r in calibrate(args, frames, ref, teacher_pck)]
        return write_calibration(args, rows)
    args.server_url = None
    args.served, args.served_path = args.teacher, args.teacher
    if args.server_model == "int8":
        args.served, args.served_path = INT8_NAME, str(build_int8_teacher(args))
    proc = None
    try:
        if args.server == "process":
            proc, args.server_url = start_server(args)
        for clip in args.clip:
            run_clip(args, clip, prof)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


def run_clip(args, clip: str, prof) -> None:
    video, start, nframes, ref_name, split = CLIPS[clip]
    frames, fps, ref, teacher_pck = load_clip(args, clip)
    runs = args.runs or list(DEFAULT_RUNS)
    if args.ablations:
        runs += ["int8:ethernet", "int8:wifi:post", "int8:wifi:threshold", "int8:wifi:nohold", "int8:wifi:reseed",
                 "int8:wifi:fixed"]
    rows = []
    seed0 = args.seed
    for spec in runs:
        reps = []
        for k in range(args.repeat):
            args.seed = seed0 + k
            row, preds = run_one(args, spec, frames, fps)
            row["seed"] = args.seed
            row["load_avg_1min"] = round(os.getloadavg()[0], 2)
            row["pck"] = round(pck_of(preds, ref), 2)
            row["pck_vs_teacher"] = round(100.0 * row["pck"] / teacher_pck, 1) if teacher_pck else None
            row["same_person"] = round(same_person_share(preds, ref), 3)
            reps.append(row)
        row = dict(reps[len(reps) // 2] if len(reps) % 2 else reps[0])
        for k in ("pck", "pck_vs_teacher", "offload_share", "cloud_share", "within_budget", "fps", "same_person",
                  "deadline_misses", "p99_ms"):
            vals = [r[k] for r in reps]
            row[k] = round(float(np.median(vals)), 4) if k not in ("pck", "pck_vs_teacher") else round(
                float(np.median(vals)), 2)
            row[k + "_range"] = [min(vals), max(vals)]
        row["repeats"] = reps
        rows.append(row)
        keys = ("run", "offload_share", "cloud_share", "deadline_misses", "fps", "pck_vs_teacher")
        log.warning("%s", {k: row[k] for k in keys})
    served_pck = None
    if args.served != args.teacher:
        served_pck = round(pck_of(run_teacher(args.served_path, frames, args.threads, args.person_selection), ref), 2)
    bound = []
    if args.timing_free:
        bound = calibrate(args, frames, ref, teacher_pck, [(e, r, 0) for e in EDGES for r in (None, 0.05)])
    links = {n.name: n for n in prof.networks}
    link_txt = "; ".join(f"{n}: {links[n].uplink_mbps:g} Mbit/s up, RTT {links[n].rtt_ms:g} ms, jitter "
                         f"{links[n].jitter_ms:g} ms, loss {links[n].loss_pct:g} %"
                         for n in sorted({r["link"] for r in rows} - {"none"}) if n in links)
    report = {"clip": clip, "split": split, "video": os.path.basename(video), "start": start,
              "frames": len(frames), "fps": fps, "reference": os.path.basename(ref_name),
              "teacher": args.teacher, "teacher_pck": round(teacher_pck, 2), "server_model": args.served,
              "server_model_pck": served_pck, "profile": args.profile,
              "person_selection": args.person_selection,
              "budget_ms": round(args.budget_ms, 1), "threads": args.threads, "server_threads": args.server_threads,
              "seed": args.seed, "edgepose": __version__, "python": platform.python_version(),
              "measurement": {"edge": "measured on this host (2 shared x86 cores), not emulated for the profile",
                              "server": f"real: {args.served} runs ({args.server}) on the same shared cores",
                              "link": f"emulated in the client transport ({args.profile} profile: {link_txt})",
                              "budget": f"{args.profile} frame budget {args.budget_ms:.1f} ms, arrival to result"},
              "variants": {v: VARIANTS[v] for v in sorted({r['variant'] for r in rows})}, "rows": rows,
              "timing_free": bound}
    md = [f"# Offload benchmark: {clip} ({report['video']} frames {start}-{start + len(frames) - 1}, "
          f"{len(frames)} at {fps:g} fps; {split} clip)", "",
          f"Profile **{args.profile}**, budget {report['budget_ms']} ms (arrival to result). Teacher {args.teacher}: "
          f"PCK@0.2 torso {report['teacher_pck']} % vs {report['reference']}. Person selection "
          f"**{args.person_selection}** (edge, teacher reference, server model and bound alike: "
          + ("the model's own full-frame pick when there is no track, the old protocol"
             if args.person_selection == "model" else "MoveNet MultiPose detector, the person nearest the track, "
             "else the largest; jumps onto another person and server answers of another person refused")
          + ")."
          + (f" Server model {args.served} (the teacher quantised to int8, calibrated on training clips only): "
             f"{served_pck} % ({100 * served_pck / teacher_pck:.1f} % of the teacher's) run on its own."
             if served_pck is not None else ""), "",
          "- edge time: **measured on this host** (2 shared x86 cores), not emulated for the profile",
          f"- server time: **real** ({args.served}, {args.server_threads} thread(s), "
          f"{'in a separate `edgepose serve` process' if args.server == 'process' else 'in this process'} "
          "on the same shared cores)",
          f"- link: **emulated** ({link_txt or 'no server'})", "",
          "| run | offload % | cloud on time % | late | misses | within budget % | p50 ms | p99 ms | fps | "
          "hold ms | PCK % | % of teacher | same person % | identity rejects |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def rng(r, k, scale=1.0, nd=1):
        lo, hi = r[k + "_range"]
        return "" if lo == hi or args.repeat == 1 else f" [{scale * lo:.{nd}f}-{scale * hi:.{nd}f}]"

    for r in rows:
        md.append(f"| {r['run']} | {100 * r['offload_share']:.1f} | {100 * r['cloud_share']:.1f} | "
                  f"{r['late_answers']} | {r['deadline_misses']:g}{rng(r, 'deadline_misses', 1, 0)} | "
                  f"{100 * r['within_budget']:.1f}{rng(r, 'within_budget', 100)} | {r['p50_ms']} | "
                  f"{r['p99_ms']} | {r['fps']} | {r['hold_ms'] if r['link'] != 'none' else '-'} | {r['pck']} | "
                  f"{r['pck_vs_teacher']}{rng(r, 'pck_vs_teacher')} | {100 * r['same_person']:.0f} | "
                  f"{r.get('identity_rejects', 0)} |")
    if args.repeat > 1:
        md += ["", f"Each run played {args.repeat} times (emulation seeds {seed0}-{seed0 + args.repeat - 1}): "
                   "median, [min-max]; the other columns are from the median run."]
    tl = [(r["run"], timeline(r)) for r in rows if r["link"] != "none"]
    if tl:
        md += ["", "## Offload timeline (all plays pooled; ms from the frame's arrival, median [p90])", "",
               "`sent`: request queued (in a hard stretch before the edge model runs, else after it); `up` / `down`: "
               "emulated link legs; `http`: the real exchange on loopback, of which `server` is the server's own "
               "time and `infer` the model; `answer`: reply back in the client; `due`: end of the frame's hold "
               "(0: not held, a probe that cannot make it); `on time`: answers used as the frame's result; `late`: "
               "after the hold's end.",
               "", "| run | offloaded | on time | late | not held | lost | sent | up | http | server | infer | down "
               "| answer | due |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, t in tl:
            md.append(f"| {name} | {t['n']} | {t['on_time']} | {t['late']} | {t['not_held']} | {t['lost']} | "
                      + " | ".join(
                t[k] for k in ("submit", "up_ms", "http_ms", "server_ms", "infer_ms", "down_ms", "answer", "due"))
                + " |")
    if bound:
        md += ["", "## Bound: the same policy with every answer on time (no clock, no network)", "",
               "What a server answering within the hold would give: the server model runs on the crop of each "
               "offloaded frame and its answer replaces the frame's pose and re-seeds the tracker. Deterministic; "
               "reported, not used to choose anything.", "",
               "| edge | offload % | PCK % | % of teacher |", "|---|---|---|---|"]
        for r in bound:
            md.append(f"| {r['edge']}{'' if r['target_rate'] else ' (no offload)'} | {100 * r['offload_share']:.1f} | "
                      f"{r['pck']} | {r['pck_vs_teacher']} |")
    md += ["", "Variants: " + "; ".join(f"`{k}`: {v}" for k, v in report["variants"].items()) + ".",
           "`same person`: share of frames whose pose centre lies within half the reference pose's size of the "
           "reference's (a single-person tracker on a multi-person clip may follow someone else). `identity "
           "rejects`: server answers refused as another person (person selection nearest)."]
    text = "\n".join(md) + "\n"
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"offload_{clip}{args.suffix}"
        (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=float))
        (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
