"""Shared parts of benchmarks/offload_video.py: clips, references, the teacher, calibration, the
int8 server model and the summary table (the script itself is the runner and its command line)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from edgepose import EstimatorOptions, PoseEstimator
from edgepose.eval.metrics import pck_torso
from edgepose.offload.controllers import OffloadControlConfig
from edgepose.offload.policy import PolicyConfig
from edgepose.offload.runtime import RuntimeOptions
from edgepose.version import __version__
from edgepose.video.sources import VideoFileSource

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


def play_realtime(rt, frames, fps: float) -> tuple[list, float]:
    """Play ``frames`` into the runtime ``rt`` on a real-time clock (arrivals at the clip's rate):
    (every result, in order, flush included; seconds from the first arrival to the last result)."""
    results = []
    t0 = time.perf_counter() + 0.05
    for i, f in enumerate(frames):
        arrival = t0 + i / fps
        while (now := time.perf_counter()) < arrival:
            results += rt.poll(arrival - now)
        results += rt.push(f.image, f.timestamp_ms, arrival_s=arrival)
    results += rt.flush()
    return results, time.perf_counter() - t0


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
    from edgepose.models.roi import roi_from_keypoints

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
          "late answer does to the track. Only training material ($EDGEPOSE_ASSETS/ASSETS.md) is used here.", "",
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
    img = next(iter(VideoFileSource(str(args.root / video), start=start, max_frames=1))).image
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
        frames = list(VideoFileSource(str(args.root / video), start=start, max_frames=nframes))
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


def start_server(args, extra: list[str] | tuple[str, ...] = ()):
    """``edgepose serve`` on a free loopback port (``extra``: more serve arguments, e.g. ``--collect DIR``);
    returns (process, url) once it is ready."""
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = args.teacher if args.served == args.teacher else f"{args.served}={args.served_path}"
    cmd = [sys.executable, "-m", "edgepose.cli.main", "serve", "--model", model, "--port", str(port),
           "--threads", str(args.server_threads), *extra]
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
    src = VideoFileSource(str(args.root / video), start=start, max_frames=nframes)
    frames = list(src)
    teacher = run_teacher(args.teacher, frames, args.threads, getattr(args, "person_selection", "model"))
    if ref_name == "teacher":
        ref = teacher
    else:
        from edgepose.eval.video import load_reference

        ref = [None if k is None else np.asarray(k) for k in
               load_reference(args.root / ref_name).keypoints[start:start + len(frames)]]
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
