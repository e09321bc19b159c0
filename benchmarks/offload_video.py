"""End-to-end video benchmark with offload under emulated links.

For each link (``none`` = no server, then the device profile's links), a video is played at
its frame rate (frames arrive on a real-time clock; a frame that waits behind a slow one pays
for it) through ``CloudEdgeRuntime`` with the teacher served in-process on loopback. Reports
per link: offload share, cloud-answered share, deadline misses, within-budget share, latency
p50/p99, sustained fps, and PCK@0.2 x torso against the clip's reference track, also as a
percentage of the teacher's PCK (the teacher run on every frame, edge only).

    python benchmarks/offload_video.py --out bench_out/offload
    python benchmarks/offload_video.py --video ../shared/assets/data/opencv_doc/vtest.avi \\
        --start 600 --reference teacher --links none wifi

Uses the public API only. Timings on shared machines are noisy (+-30 %); the edge model runs
at this machine's speed (not emulated), the server shares the same cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

from edgepose import EstimatorOptions, PoseEstimator
from edgepose.eval.metrics import pck_torso
from edgepose.offload.policy import PolicyConfig
from edgepose.offload.runtime import CloudEdgeRuntime, RuntimeOptions
from edgepose.profiles import load_profile
from edgepose.version import __version__
from edgepose.video.sources import VideoFileSource

ASSETS = Path(os.environ.get("EDGEPOSE_ASSETS", Path(__file__).resolve().parents[1].parent / "shared" / "assets"))
log = logging.getLogger("offload_video")


def pck_of(preds: list, ref: list) -> float:
    """PCK@0.2 x torso (%) over frames where the reference has a pose; a missing prediction misses."""
    p, g = [], []
    for pr, rf in zip(preds, ref):
        if rf is None:
            continue
        g.append(np.concatenate([rf, np.ones((17, 1))], axis=1))
        p.append(pr if pr is not None else np.full((17, 2), -1e6))
    return pck_torso(np.array(p), np.array(g)).value


def run_teacher(teacher: str, frames, threads: int) -> list:
    est = PoseEstimator(teacher, options=EstimatorOptions(running_mode="video"), num_threads=threads)
    with est:
        return [(r.pose.keypoints if r.pose else None) for r in (est.detect_for_video(f.image, f.timestamp_ms)
                                                                  for f in frames)]


def run_link(args, link: str, frames, fps: float, policy: PolicyConfig, label: str) -> tuple[dict, list]:
    opts = RuntimeOptions(budget_ms=args.budget_ms, policy=policy)
    rt = CloudEdgeRuntime.create(args.edge, server=None if link == "none" else "embedded", teacher=args.teacher,
                                 link=link, profile=args.profile if link not in ("none", "loopback") else None,
                                 seed=args.seed, options=opts, num_threads=args.threads)
    preds = []
    with rt:
        t0 = time.perf_counter() + 0.05
        for i, f in enumerate(frames):
            arrival = t0 + i / fps
            time.sleep(max(0.0, arrival - time.perf_counter()))
            r = rt.process(f.image, f.timestamp_ms, arrival_s=arrival)
            preds.append(r.pose.keypoints if r.pose else None)
        wall = time.perf_counter() - t0
        s = rt.summary()
    b = s["budget"]
    row = {"run": label, "link": link, "frames": s["frames"], "offload_share": round(s.get("offload_share", 0.0), 4),
           "cloud_share": round(s["cloud_share"], 4), "deadline_misses": b["deadline_misses"],
           "within_budget": b["within_budget"], "p50_ms": round(b["frame_ms"]["p50"], 1),
           "p99_ms": round(b["frame_ms"]["p99"], 1), "fps": round(len(frames) / wall, 1),
           "sources": s["sources"], "client": s.get("client", {}), "policy_no_fit": s["policy_no_fit"],
           "keyframe_interval": s["keyframe_interval"]}
    return row, preds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(ASSETS / "data" / "tfjs_testdata" / "pose_1.mp4"))
    ap.add_argument("--reference", default=None,
                    help="reference track JSON, or 'teacher' (default: the video's .json next to it if any)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--edge", default="movenet-lightning-int8")
    ap.add_argument("--teacher", default="movenet-thunder-fp32")
    ap.add_argument("--profile", default="rpi4", help="device profile: links and frame budget")
    ap.add_argument("--links", nargs="+", default=["none", "wifi", "lte"])
    ap.add_argument("--forced", action="store_true",
                    help="also run each link with low thresholds (enter 0.1 / leave 0.07) to exercise offloading")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for offload_video.json and .md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    prof = load_profile(args.profile)
    args.budget_ms = prof.frame_budget.frame_ms
    src = VideoFileSource(args.video, start=args.start, max_frames=args.max_frames)
    fps = src.fps
    frames = list(src)
    teacher = run_teacher(args.teacher, frames, args.threads)
    ref_path = args.reference or (str(Path(args.video).with_suffix(".json")) if Path(args.video).with_suffix(
        ".json").is_file() else "teacher")
    if ref_path == "teacher":
        ref = teacher
    else:
        from edgepose.eval.video import load_reference

        ref = load_reference(ref_path).keypoints[args.start:args.start + len(frames)]
    teacher_pck = pck_of(teacher, ref)
    rows = []
    runs = [(link, PolicyConfig(), link) for link in args.links]
    if args.forced:
        runs += [(link, PolicyConfig(enter=0.1, leave=0.07), f"{link}-forced") for link in args.links if link != "none"]
    for link, policy, label in runs:
        row, preds = run_link(args, link, frames, fps, policy, label)
        row["pck"] = round(pck_of(preds, ref), 2)
        row["pck_vs_teacher"] = round(100.0 * row["pck"] / teacher_pck, 1) if teacher_pck else None
        rows.append(row)
        keys = ("run", "offload_share", "cloud_share", "deadline_misses", "fps", "pck")
        log.warning("%s", {k: row[k] for k in keys})
    report = {"video": os.path.basename(args.video), "start": args.start, "frames": len(frames), "fps": fps,
              "reference": os.path.basename(ref_path), "edge": args.edge, "teacher": args.teacher,
              "teacher_pck": round(teacher_pck, 2), "profile": args.profile, "budget_ms": round(args.budget_ms, 1),
              "threads": args.threads, "seed": args.seed, "edgepose": __version__, "python": platform.python_version(),
              "rows": rows}
    md = [f"# Offload benchmark: {report['video']} ({len(frames)} frames at {fps:g} fps), profile {args.profile}, "
          f"budget {report['budget_ms']} ms", "",
          f"edge {args.edge}, teacher {args.teacher} (PCK@0.2 torso {report['teacher_pck']} % vs {report['reference']})",
          "", "| run | offload % | cloud % | misses | within budget | p50 ms | p99 ms | fps | PCK % | % of teacher |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['run']} | {100 * r['offload_share']:.1f} | {100 * r['cloud_share']:.1f} | "
                  f"{r['deadline_misses']} | {100 * r['within_budget']:.1f} | {r['p50_ms']} | {r['p99_ms']} | "
                  f"{r['fps']} | {r['pck']} | {r['pck_vs_teacher']} |")
    text = "\n".join(md) + "\n"
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "offload_video.json").write_text(json.dumps(report, indent=1))
        (out / "offload_video.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
