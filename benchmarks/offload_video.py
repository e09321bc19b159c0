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

    python benchmarks/offload_video.py --clip pose_1 --out benchmarks/results
    python benchmarks/offload_video.py --clip vtest_eval body3d_eval --person-selection nearest \
        --repeat 3 --seed 4 --timing-free --out benchmarks/results
    python benchmarks/offload_video.py --clip body3d_train --calibrate --out benchmarks/results

Uses the public API only. Timings on shared machines are noisy (+-30 %).
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

ASSETS = Path(os.environ.get("EDGEPOSE_ASSETS", Path(__file__).resolve().parents[1].parent / "shared" / "assets"))
os.environ.setdefault("EDGEPOSE_MODEL_DIR", str(ASSETS / "models"))

from edgepose import EstimatorOptions, PoseEstimator  # noqa: E402
from edgepose.eval.metrics import pck_torso  # noqa: E402
from edgepose.offload.budget import OffloadControlConfig  # noqa: E402
from edgepose.offload.policy import PolicyConfig  # noqa: E402
from edgepose.offload.runtime import CloudEdgeRuntime, RuntimeOptions  # noqa: E402
from edgepose.profiles import load_profile  # noqa: E402
from edgepose.version import __version__  # noqa: E402
from edgepose.video.sources import VideoFileSource  # noqa: E402

log = logging.getLogger("offload_video")

_TF = "data/tfjs_testdata/"
CLIPS = {  # name: (video, start, frames or None, reference json or "teacher", split)
    "pose_1": (_TF + "pose_1.mp4", 0, None, _TF + "pose_1.json", "evaluation"),
    "pose_squats": (_TF + "pose_squats.mp4", 0, None, _TF + "pose_squats.full.json", "evaluation"),
    "body3d_eval": ("data/mmpose_mini/demo_resources/body3d_demo.mp4", 299, 100, "teacher", "evaluation"),
    "vtest_eval": ("data/opencv_doc/vtest.avi", 600, 195, "teacher", "evaluation"),
    "body3d_train": ("data/mmpose_mini/demo_resources/body3d_demo.mp4", 0, 299, "teacher", "training"),
    "vtest_train": ("data/opencv_doc/vtest.avi", 0, 600, "teacher", "training"),
    # single-person clips of the unlabelled training pool (data/train_extra, PROVENANCE.md)
    "taichi_train": ("data/train_extra/gh_open-mmlab_mmskeleton/resource_data_example_ta_chi.mp4", 0, 300,
                     "teacher", "training"),
    "clean_jerk_train": ("data/train_extra/gh_open-mmlab_mmskeleton/resource_data_example_clean_and_jerk.mp4", 0,
                         300, "teacher", "training"),
    "taiji_train": ("data/train_extra/gh_Jeff-sjtu_HybrIK/examples_taiji.mp4", 0, 300, "teacher", "training"),
    "sports2d_train": ("data/train_extra/pypi_sports2d/sports2d_demo.mp4", 0, 230, "teacher", "training"),
    "pose2sim_train": ("data/train_extra/pypi_pose2sim/Demo_SinglePerson_cam02.mp4", 0, 100, "teacher", "training"),
}
EDGES = {"int8": "movenet-lightning-int8", "fp32": "movenet-lightning-fp32"}
VARIANTS = {
    "default": "rate policy (hardest 5 % of keyframes, hysteresis, <= 15 % cap; the first keyframe's whole frame "
               "offloaded for the acquisition), crops sent before the edge run inside a hard stretch, hold to the "
               "end of the budget (less margin and release lateness), offload rate / crop size adapted, late "
               "answers not used for re-seeding",
    "threshold": "the previous fixed-threshold policy (enter 0.5 / leave 0.3), otherwise default",
    "nohold": "result_delay_ms = 0: never hold a frame (answers can only count as late)",
    "reseed": "late answers up to 100 ms old re-seed the tracker",
    "fixed": "no offload-rate / crop-size adaptation (rate scale 1, 256 px crop)",
    "rate10": "target_rate 0.10",
    "post": "every crop sent after the frame's edge run (RuntimeOptions.early_offload off)",
}
DEFAULT_RUNS = ["int8:none", "int8:wifi", "int8:lte", "fp32:none", "fp32:wifi", "fp32:lte"]


def pck_of(preds: list, ref: list) -> float:
    """PCK@0.2 x torso (%) over frames where the reference has a pose; a missing prediction misses."""
    p, g = [], []
    for pr, rf in zip(preds, ref):
        if rf is None:
            continue
        g.append(np.concatenate([rf[:, :2], np.ones((17, 1))], axis=1))
        p.append(pr[:, :2] if pr is not None else np.full((17, 2), -1e6))
    return pck_torso(np.array(p), np.array(g)).value


def same_person_share(preds: list, ref: list) -> float:
    """Share of frames whose pose centre is within half the reference pose's size of the reference's.

    A diagnostic for multi-person clips: a single-person tracker may follow someone else than
    the reference track does, and then no offload policy can agree with it.
    """
    same = []
    for pr, rf in zip(preds, ref):
        if rf is None:
            continue
        if pr is None:
            same.append(False)
            continue
        size = max(float(np.ptp(rf[:, :2], axis=0).max()), 20.0)
        same.append(float(np.linalg.norm(np.median(pr[:, :2], 0) - np.median(rf[:, :2], 0))) < 0.5 * size)
    return float(np.mean(same)) if same else float("nan")


def video_options(selection: str = "model") -> EstimatorOptions:
    """The video-mode estimator options every run of one report uses (edge, teacher, server model)."""
    return EstimatorOptions(running_mode="video", person_selection=selection)


def run_teacher(teacher: str, frames, threads: int, selection: str = "model") -> list:
    est = PoseEstimator(teacher, options=video_options(selection), num_threads=threads)
    with est:
        return [(r.pose.keypoints if r.pose else None) for r in (est.detect_for_video(f.image, f.timestamp_ms)
                                                                  for f in frames)]


def calibrate(args, frames, ref, teacher_pck: float, cases: list[tuple] | None = None) -> list[dict]:
    """Timing-free policy evaluation (training clips only): answers arrive at once, or ``lag`` frames late.

    The edge model tracks the clip frame by frame; when the policy offloads a keyframe, the
    server model runs on the crop of that frame (what the server would answer) and the answer
    either replaces the frame's pose and re-seeds the tracker (``lag`` 0) or only re-seeds the
    tracker ``lag`` frames later. Deterministic: no clock, no network. A case is ``(edge, rate,
    lag[, early])``; ``early`` (default True, ``RuntimeOptions.early_offload``): in a hard stretch
    the crop is the tracker's ROI for the frame (sent before the edge model runs), else the ROI
    from the frame's own edge pose.
    """
    from edgepose.models import load_model
    from edgepose.offload.policy import OffloadPolicy
    from edgepose.video.tracker import roi_from_keypoints

    teacher = load_model(getattr(args, "served_path", args.teacher), num_threads=args.threads)
    rows = []
    if cases is None:
        cases = [(edge, rate, 0) for edge in EDGES for rate in (None, 0.05, 0.10, 0.15)]
        cases += [(edge, 0.05, 0, False) for edge in EDGES]
        cases += [(edge, 0.05, 0, True, False) for edge in EDGES]
        cases += [(edge, 0.10, lag) for edge in EDGES for lag in (2, 4)]
    for case in cases:
        edge, rate, lag = case[:3]
        early_offload = case[3] if len(case) > 3 else True
        acquire = case[4] if len(case) > 4 else PolicyConfig.acquire
        est = PoseEstimator(EDGES[edge], options=video_options(getattr(args, "person_selection", "model")),
                            num_threads=args.threads)
        pol = OffloadPolicy(PolicyConfig(target_rate=rate or 0.05, leave_rate=2 * (rate or 0.05), acquire=acquire))
        due: dict[int, list] = {}
        preds, sent, roi = [], 0, None
        for i, f in enumerate(frames):
            size = (f.image.shape[1], f.image.shape[0])
            for kps, sc in due.pop(i, []):
                est.reseed(kps, sc, size)
            early = early_offload and pol.hard  # RuntimeOptions.early_offload: in a hard stretch, the tracker's crop
            roi_early = est.roi
            r = est.detect_for_video(f.image, f.timestamp_ms)
            p = r.pose
            box = max(p.box[2] - p.box[0], p.box[3] - p.box[1]) if p is not None else 1.0
            pol.update(None if p is None else p.keypoints, None if p is None else p.scores, box_size=box)
            out = None if p is None else p.keypoints
            roi = roi_early if early else None if p is None else roi_from_keypoints(p.keypoints, p.scores, size)
            if rate is not None and (early or pol.hard) and pol.allow():
                sent += 1
                from edgepose.models._crop import Roi

                ans = teacher.estimate(f.image, roi or Roi.full_frame(*size))
                if est.is_other_person(ans.keypoints, ans.scores, size):
                    pass  # another person than the tracked one: refused, as CloudEdgeRuntime does
                elif lag == 0:
                    out = ans.keypoints
                    est.reseed(ans.keypoints, ans.scores, size)
                else:
                    due.setdefault(i + lag, []).append((ans.keypoints, ans.scores))
            pol.tick()  # after the decision, as CloudEdgeRuntime.push does
            preds.append(out)
        est.close()
        pck = pck_of(preds, ref)
        rows.append({"edge": EDGES[edge], "target_rate": rate, "answer_lag_frames": lag if rate else None,
                     "send": (("early" if early_offload else "post") + ("" if acquire else ", no acquire")
                              if rate else None),
                     "offload_share": round(sent / len(frames), 4), "pck": round(pck, 2),
                     "pck_vs_teacher": round(100.0 * pck / teacher_pck, 1)})
        log.warning("%s", rows[-1])
    teacher.close()
    return rows


def write_calibration(args, rows: list[dict]) -> int:
    """Per-clip rows and the mean over clips of each case (edge, target rate, answer lag)."""
    cases: dict[tuple, list[dict]] = {}
    for r in rows:
        cases.setdefault((r["edge"], r["target_rate"], r["answer_lag_frames"], r.get("send")), []).append(r)
    mean = [{"edge": e, "target_rate": t, "answer_lag_frames": lag, "send": send,
             "offload_share": round(float(np.mean([r["offload_share"] for r in rs])), 4),
             "pck_vs_teacher": round(float(np.mean([r["pck_vs_teacher"] for r in rs])), 2),
             "pck_vs_teacher_min": min(r["pck_vs_teacher"] for r in rs)} for (e, t, lag, send), rs in cases.items()]
    clips = {c: {"video": CLIPS[c][0], "start": CLIPS[c][1], "frames": CLIPS[c][2]} for c in args.clip}
    report = {"mode": "calibration", "clips": clips, "teacher": args.teacher,
              "server_model": getattr(args, "served", args.teacher),
              "method": f"timing-free: the server model ({getattr(args, 'served', args.teacher)}) answers on the "
                        "offloaded crop; lag 0 = the answer replaces the frame's pose and re-seeds the tracker, lag L "
                        "= it only re-seeds the tracker L frames later; send early = in a hard stretch the crop is "
                        "the tracker's ROI (sent before the edge model runs), post = the ROI from the frame's edge "
                        "pose; no acquire = PolicyConfig.acquire off (the first keyframe is not offloaded). "
                        f"Reference: the teacher's ({args.teacher}) own track",
              "edgepose": __version__, "mean_over_clips": mean, "rows": rows}
    md = [f"# Offload calibration on training clips: {', '.join(args.clip)}", "",
          report["method"] + ". No clock, no network: what the policy gains when answers are on time, and what a "
          "late answer does to the track. Only training material (ASSETS.md) is used here.", "",
          "## Mean over clips", "",
          "| edge | target rate | answer lag (frames) | send | offload % | % of teacher PCK (mean) | worst clip |",
          "|---|---|---|---|---|---|---|"]
    for r in mean:
        md.append(f"| {r['edge']} | {r['target_rate'] or 'none'} | "
                  f"{'-' if r['answer_lag_frames'] is None else r['answer_lag_frames']} | {r['send'] or '-'} | "
                  f"{100 * r['offload_share']:.1f} | {r['pck_vs_teacher']} | {r['pck_vs_teacher_min']} |")
    md += ["", "## Per clip", "", "| clip | edge | target rate | answer lag | send | offload % | % of teacher PCK |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['clip']} | {r['edge']} | {r['target_rate'] or 'none'} | "
                  f"{'-' if r['answer_lag_frames'] is None else r['answer_lag_frames']} | {r.get('send') or '-'} | "
                  f"{100 * r['offload_share']:.1f} | {r['pck_vs_teacher']} |")
    text = "\n".join(md) + "\n"
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "offload_calibration.json").write_text(json.dumps(report, indent=1))
        (out / "offload_calibration.md").write_text(text)
    print(text)
    return 0


def options_for(variant: str, budget_ms: float) -> RuntimeOptions:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown run variant {variant!r}; valid: {', '.join(VARIANTS)}")
    policy, kw, control = PolicyConfig(), {}, OffloadControlConfig()
    if variant == "threshold":
        policy = PolicyConfig(mode="threshold")
    elif variant == "rate10":
        policy = PolicyConfig(target_rate=0.10, leave_rate=0.20)
    elif variant == "nohold":
        kw["result_delay_ms"] = 0.0
    elif variant == "fixed":
        control = OffloadControlConfig(crop_sizes=(256,), min_scale=1.0)
    elif variant == "reseed":
        kw["late_reseed_ms"] = 100.0
    elif variant == "post":
        kw["early_offload"] = False
    return RuntimeOptions(budget_ms=budget_ms, policy=policy, control=control, **kw)


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
    results = []
    with rt:
        t0 = time.perf_counter() + 0.05
        for i, f in enumerate(frames):
            arrival = t0 + i / fps
            while (now := time.perf_counter()) < arrival:
                results += rt.poll(arrival - now)
            results += rt.push(f.image, f.timestamp_ms, arrival_s=arrival)
        results += rt.flush()
        wall = time.perf_counter() - t0
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
    ap.add_argument("--out", default=None, help="folder for offload_<clip>.json and .md")
    ap.add_argument("--summary", action="store_true",
                    help="only write <out>/offload_summary.md from the evaluation clips' reports there")
    ap.add_argument("--server-models", action="store_true",
                    help="only measure the invoke time of the server model candidates (fp32 / int8, 1 / 2 threads)")
    ap.add_argument("--rounds", type=int, default=20, help="--server-models: interleaved rounds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.server_models:
        return measure_server_models(args)
    if args.summary:
        print(summarize(args.out or "benchmarks/results"))
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


EVAL_CLIPS = ("pose_1", "pose_squats", "body3d_eval", "vtest_eval")
INT8_NAME = "movenet-thunder-int8"
#: training clips whose teacher-tracked crops calibrate the int8 server model (never evaluation clips)
INT8_CALIBRATION = ("body3d_train", "vtest_train", "taichi_train", "clean_jerk_train", "taiji_train",
                    "sports2d_train", "pose2sim_train")


def measure_server_models(args) -> int:
    """Invoke time of the candidate server models on this host: Thunder fp32 vs its int8 build, 1 vs 2 threads.

    ``model.estimate`` on a 256 px crop of a training frame (crop, infer, decode), interleaved
    rounds (fp32-1, fp32-2, int8-1, int8-2, repeated) so drifting load from other processes hits
    every candidate alike; median and p90 per candidate, and the ratio to fp32 at 1 thread.
    """
    from edgepose.models import load_model
    from edgepose.models._crop import Roi

    int8 = str(build_int8_teacher(args))
    video, start, _, _, _ = CLIPS["body3d_train"]
    img = next(iter(VideoFileSource(str(ASSETS / video), start=start, max_frames=1))).image
    roi = Roi.full_frame(img.shape[1], img.shape[0])
    cands = [(f"{args.teacher} (ONNX, ORT)", args.teacher, 1), (f"{args.teacher} (ONNX, ORT)", args.teacher, 2),
             (f"{INT8_NAME} (ONNX int8 QDQ, ORT)", int8, 1), (f"{INT8_NAME} (ONNX int8 QDQ, ORT)", int8, 2)]
    models = [load_model(m, num_threads=t) for _, m, t in cands]
    times: list[list[float]] = [[] for _ in cands]
    for m in models:
        for _ in range(5):
            m.estimate(img, roi)
    for _ in range(args.rounds):
        for i, m in enumerate(models):
            for _ in range(5):
                t0 = time.perf_counter()
                m.estimate(img, roi)
                times[i].append((time.perf_counter() - t0) * 1e3)
    for m in models:
        m.close()
    base = float(np.median(times[0]))
    md = ["# Server model invoke time on this host", "",
          f"`model.estimate` on one 256 px crop (crop + infer + decode), {args.rounds} interleaved rounds of 5 per "
          f"candidate, on the 2 shared x86 cores (load average {os.getloadavg()[0]:.1f} at the end; other jobs ran "
          "beside it, so read the ratios). No int8 TFLite of Thunder is among the assets (only Lightning int8 is); "
          "the int8 candidate is Thunder fp32 quantised here with ONNX Runtime static QDQ (per-channel, MinMax, "
          f"70 crops of the training clips {', '.join(INT8_CALIBRATION)}).", "",
          "| model | threads | median ms | p90 ms | vs fp32 1 thread |", "|---|---|---|---|---|"]
    rows = []
    for (name, _, t), ts in zip(cands, times):
        med, p90 = float(np.median(ts)), float(np.percentile(ts, 90))
        rows.append({"model": name, "threads": t, "median_ms": round(med, 2), "p90_ms": round(p90, 2)})
        md.append(f"| {name} | {t} | {med:.1f} | {p90:.1f} | {med / base:.2f}x |")
    text = "\n".join(md) + "\n"
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "offload_server_models.json").write_text(json.dumps({"rows": rows, "rounds": args.rounds}, indent=1))
        (out / "offload_server_models.md").write_text(text)
    print(text)
    return 0


def build_int8_teacher(args) -> Path:
    """The teacher quantised to int8 (ORT static QDQ, per-channel, MinMax) for the server; cached.

    On this host Thunder fp32 takes ~22 ms per crop (1 thread, idle machine; 2 threads are slower on
    the 2 shared cores) and the int8 build ~10-14 ms, which is what lets an answer come back within a
    66.7 ms budget over a 20 ms RTT link. Calibration: 70 crops the teacher itself tracks on the
    training clips (10 per clip, evenly spaced); the evaluation clips are never used.
    """
    out = Path(args.cache) / "movenet_thunder_int8_qdq.onnx"
    if out.is_file():
        return out
    import onnx

    from edgepose.compression.export.onnx_export import set_metadata
    from edgepose.compression.quantize.ort_static import QuantizeConfig, quantize
    from edgepose.models import find_file, get_card
    from edgepose.models._crop import Roi, crop

    if args.teacher != "movenet-thunder-fp32":
        raise SystemExit("--server-model int8 quantises movenet-thunder-fp32; pass --server-model teacher")
    crops = []
    for clip in INT8_CALIBRATION:
        video, start, nframes, _, split = CLIPS[clip]
        assert split == "training"
        frames = list(VideoFileSource(str(ASSETS / video), start=start, max_frames=nframes))
        est = PoseEstimator(args.teacher, options=EstimatorOptions(running_mode="video"), num_threads=args.threads)
        pick = set(np.linspace(0, len(frames) - 1, 10).astype(int).tolist())
        with est:
            for i, f in enumerate(frames):
                if i in pick:
                    roi = est.roi or Roi.full_frame(f.image.shape[1], f.image.shape[0])
                    crops.append(crop(f.image, roi, 256, 256)[0])
                est.detect_for_video(f.image, f.timestamp_ms)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    src = find_file(get_card(args.teacher).files[0])
    quantize(src, tmp, QuantizeConfig(num_calibration=len(crops)), calibration=crops)
    m = onnx.load(str(tmp))
    set_metadata(m, {"edgepose.card": args.teacher, "edgepose.calibration": ",".join(INT8_CALIBRATION)})
    onnx.save(m, str(tmp))
    tmp.replace(out)
    log.warning("built the int8 server model %s from %d training crops", out, len(crops))
    return out


def summarize(out_dir) -> str:
    """offload_summary.md from the evaluation clips' JSON reports in ``out_dir``: the issue's targets per row.

    ``offload_<clip>.json`` gives the main table; ``offload_<clip>_model.json`` (the same clip under the
    old ``--person-selection model`` protocol, where one was kept) a second table, so nothing is hidden.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = ["| clip | person selection | run | % of teacher PCK | offload % | cloud on time % | within budget % | "
            "same person % | fps | bound | targets met |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    md = ["# Offload benchmark summary (evaluation clips)", "",
          "Targets (issue 6, emulated Wi-Fi): >= 97 % of the teacher's PCK, <= 15 % of frames offloaded, >= 99 % "
          "of frames within budget; the same table for LTE and no server. Edge time measured on this host, server "
          "time real (the server model in its own process on the same 2 shared cores), link emulated (rpi4 profile "
          "figures). `% of teacher PCK`: against the teacher (Thunder fp32) run on its own. `cloud on time`: share "
          "of frames whose result is the server's answer, received within the frame's hold. `bound`: the same "
          "policy with every answer on time (timing-free, see each clip's report). `same person`: share of frames "
          "whose pose is of the person the reference follows. `person selection` "
          "(`EstimatorOptions.person_selection`, used alike for the edge, the teacher reference, the server model's "
          "own run and the bound): `model` = when there is no track the model's own full-frame pass picks someone "
          "(the old protocol); `nearest` = the MoveNet MultiPose detector lists everyone and the tracker takes the "
          "person nearest its last track, else the largest, and refuses jumps onto another person (also server "
          "answers of another person). On body3d_eval and vtest_eval the reference is the teacher's own track, so "
          "it depends on the protocol; pose_1 and pose_squats have external reference tracks.", ""] + head
    servers: list[str] = []
    old: list[str] = []

    def rows_of(path: Path, clip: str) -> list[str]:
        rep = json.loads(path.read_text())
        if rep.get("server_model") and rep["server_model"] not in servers:
            servers.append(rep["server_model"])
        sel = rep.get("person_selection", "model")
        bound = {r["edge"]: r["pck_vs_teacher"] for r in rep.get("timing_free", []) if r["target_rate"]}
        lines = []
        for r in rep["rows"]:
            if r["variant"] != "default":
                continue
            ok = {"PCK": r["pck_vs_teacher"] >= 97.0, "share": r["offload_share"] <= 0.15,
                  "budget": r["within_budget"] >= 0.99}
            met = "yes" if all(ok.values()) else "no (" + ", ".join(k for k, v in ok.items() if not v) + ")"
            same = f"{100 * r['same_person']:.0f}" if "same_person" in r else "-"
            lines.append(f"| {clip} | {sel} | {r['run']} | {r['pck_vs_teacher']} | {100 * r['offload_share']:.1f} | "
                         f"{100 * r['cloud_share']:.1f} | {100 * r['within_budget']:.1f} | {same} | {r['fps']} | "
                         f"{bound.get(r['edge'], '-') if r['link'] != 'none' else '-'} | {met} |")
        return lines

    for clip in EVAL_CLIPS:
        path = out / f"offload_{clip}.json"
        if path.is_file():
            md += rows_of(path, clip)
        path = out / f"offload_{clip}_model.json"
        if path.is_file():
            old += rows_of(path, clip)
    if old:
        md += ["", "## The same clips under the old protocol (person selection `model`)", "",
               "Before `EstimatorOptions.person_selection` existed every run used the model's own full-frame pick; "
               "these are those runs (`offload_<clip>_model.*`), kept for comparison.", ""] + head + old
    if servers:
        md += ["", f"Server model: {', '.join(servers)}."]
    text = "\n".join(md) + "\n"
    (out / "offload_summary.md").write_text(text)
    return text


def start_server(args):
    """``edgepose serve`` on a free loopback port; returns (process, url) once it is ready."""
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = args.teacher if args.served == args.teacher else f"{args.served}={args.served_path}"
    cmd = [sys.executable, "-m", "edgepose.cli.main", "serve", "--model", model, "--port", str(port),
           "--threads", str(args.server_threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"edgepose serve did not become ready on {url}: {' '.join(cmd)}")


def load_clip(args, clip: str):
    video, start, nframes, ref_name, split = CLIPS[clip]
    src = VideoFileSource(str(ASSETS / video), start=start, max_frames=nframes)
    frames = list(src)
    teacher = run_teacher(args.teacher, frames, args.threads, getattr(args, "person_selection", "model"))
    if ref_name == "teacher":
        ref = teacher
    else:
        from edgepose.eval.video import load_reference

        ref = [None if k is None else np.asarray(k) for k in
               load_reference(ASSETS / ref_name).keypoints[start:start + len(frames)]]
    return frames, src.fps, ref, pck_of(teacher, ref)


def timeline(row: dict) -> dict:
    """Per-stage medians [p90] of the offloaded frames of a run (all its plays pooled)."""
    tr = [t for r in row.get("repeats", [row]) for t in r.get("offload_trace", [])]
    out = {"n": len(tr), "on_time": sum(t["used"] for t in tr), "late": sum(t["status"] == "late" for t in tr),
           "not_held": sum(t["due"] <= 0.0 for t in tr),
           "lost": sum(t["status"] in ("lost", "error", "busy") for t in tr)}
    for k in ("submit", "up_ms", "http_ms", "server_ms", "infer_ms", "down_ms", "answer", "due"):
        v = [t[k] for t in tr if t.get(k) is not None and (k in ("submit", "due") or t["status"] in ("ok", "late"))]
        out[k] = f"{np.median(v):.1f} [{np.percentile(v, 90):.1f}]" if v else "-"
    return out


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
