"""DKD ablation: per-frame student vs DKD (same encoder) on the videos with reference tracks.

Run from the project root (needs the compress extra and ../shared/assets):

    python benchmarks/dkd_ablation.py                              # clips, 2 arms x 2 seeds, report
    python benchmarks/dkd_ablation.py --stage run --arm dkd --seed 1
    python benchmarks/dkd_ablation.py --stage report

1. Training data: licence-clean training videos (``compression.temporal.data.TRAIN_VIDEOS``,
   only 5 of its 20 near-identical ASL clips), followed with a teacher-driven ROI tracker and
   labelled by MoveNet Thunder on every stored frame (gaps 1 / 2 / 4). Evaluation clips are never read.
2. The encoder + per-frame head is first pre-trained once on still Thunder pseudo-labels of the
   shippable pool (as ``vitkd_ablation``), then each arm fine-tunes it on the clips, same steps,
   same clips, per seed: ``per_frame`` (plain 1x1 head, output KD on each frame) and ``dkd``
   (+ pose-kernel distillator, clips rolled out from a keyframe, output KD + temporal consistency).
3. Both are exported to ONNX and run through the runtime in video mode (``PoseEstimator``,
   One Euro off, tracks started / restarted from MoveNet MultiPose person boxes) on pose_1.mp4 (vs pose_1.json) and pose_squats.mp4 (vs pose_squats.full.json):
   PCK@0.2 x reference torso and mean px error. Cost: MACs counted on the ONNX graph and ms
   measured interleaved (ORT, 1 thread, spinning off, median).

Writes runs/dkd/* and benchmarks/results/dkd_ablation.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgepose.compression.distill.distill import DistillReport
from edgepose.compression.distill.dkd import ClipConfig, DKDTrainConfig, collect_clips, pretrain_frames, train_dkd
from edgepose.compression.students.dkd_model import DKDConfig, DKDPose, PerFrame, export_dkd
from edgepose.compression.students.vit import export_heatmap_student

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT.parent / "shared" / "assets"
DATA = ASSETS / "data" / "tfjs_testdata"
log = logging.getLogger("dkd_ablation")
ARMS = ("per_frame", "dkd")
VIDEOS = {"pose_1": ("pose_1.mp4", "pose_1.json"), "pose_squats": ("pose_squats.mp4", "pose_squats.full.json")}
MODEL = DKDConfig()


def _clips():
    from edgepose.compression.temporal.data import TRAIN_VIDEOS

    asl = [v for v in TRAIN_VIDEOS if "asl_gestures" in v[0]]
    vids = [(str(ASSETS / p), a, b) for p, a, b in TRAIN_VIDEOS if v_ok(p, asl)]
    m = ASSETS / "models" / "movenet"
    cfg = ClipConfig(teacher=str(m / "movenet_thunder_fp32.onnx"), detector=str(m / "movenet_multipose_lightning_fp32.onnx"))
    return collect_clips(vids, cfg, ROOT / "runs" / "cache")


def v_ok(path: str, asl: list) -> bool:
    """Every training video but 15 of the 20 near-identical ASL clips."""
    return "asl_gestures" not in path or path in [v[0] for v in asl[:5]]


def onnx_macs(path) -> int:
    """Multiply-accumulates of Conv / MatMul / Gemm nodes (shapes from ONNX shape inference)."""
    import onnx

    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for n in m.graph.node:
        out = shapes.get(n.output[0])
        if not out:
            continue
        if n.op_type == "Conv":
            w = shapes[n.input[1]]
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type in ("MatMul", "Gemm"):
            a = shapes[n.input[0]]
            k = a[0] if (n.op_type == "Gemm" and any(at.name == "transA" and at.i for at in n.attribute)) else a[-1]
            total += int(np.prod(out)) * int(k)
    return total


def _session(path):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = 1, 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.log_severity_level = 3
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def interleaved_ms(per_frame_path, dkd_path, rounds: int = 20, per_round: int = 10) -> dict:
    """Median ms of one forward pass of each graph, interleaved A B A B (DKD: a tracked frame)."""
    a, b = _session(per_frame_path), _session(dkd_path)
    s = MODEL.input_size
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, s, s)).astype(np.float32)
    feeds = {"per_frame": (a, {"image": x}),
             "dkd": (b, {"image": x, "kernels": np.zeros((1, 17, MODEL.kernel_dim), np.float32),
                         "gate": np.ones(1, np.float32)})}
    times = {k: [] for k in feeds}
    for sess, f in feeds.values():
        for _ in range(10):
            sess.run(None, f)
    for r in range(rounds):
        for k in (ARMS if r % 2 == 0 else ARMS[::-1]):
            sess, f = feeds[k]
            for _ in range(per_round):
                t0 = time.perf_counter()
                sess.run(None, f)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90))} for k, v in times.items()}


_DETECTOR = None


def with_detector(model):
    """Start (and restart) tracks from MoveNet MultiPose person boxes instead of a full-frame pass.

    The students are trained on person crops, so a full-frame first pass finds nobody; both arms
    get the same detector. The model's own ``initial_roi`` still runs first (DKD drops its kernels).
    """
    global _DETECTOR
    from edgepose.compression.data.labels import PersonDetector
    from edgepose.models._crop import Roi

    if _DETECTOR is None:
        _DETECTOR = PersonDetector(str(ASSETS / "models" / "movenet" / "movenet_multipose_lightning_fp32.onnx"),
                                   num_threads=1)
    own = model.initial_roi

    def initial_roi(frame):
        own(frame)
        boxes = [b for s, b in _DETECTOR(frame) if s >= 0.3]
        return (Roi.from_box(*boxes[0]) if boxes else None), {}

    model.initial_roi = initial_roi
    model.has_detector = True
    return model


def _track(model_factory, video: str) -> tuple[list, float | None]:
    """(track, share of frames that ran with carried kernels; None for the per-frame student)."""
    from edgepose.eval.video import run_tracked

    with model_factory() as model:
        seen = []
        est = model.estimate

        def counted(frame, roi):
            e = est(frame, roi)
            seen.append(not getattr(model, "last_was_keyframe", True))
            return e

        model.estimate = counted
        track = run_tracked(with_detector(model), DATA / VIDEOS[video][0], smoothing=False, progress=False)
        return track, (float(np.mean(seen)) if hasattr(model, "last_was_keyframe") and seen else None)


def evaluate_videos(path: Path, arm: str, keyframe_interval: int | None = None) -> dict:
    from edgepose.backends import open_backend
    from edgepose.eval.video import compare_tracks, load_reference
    from edgepose.models import load_model
    from edgepose.models.dkd import DKDModel

    if arm == "per_frame":
        def factory():
            return load_model(path, num_threads=1)
    else:
        def factory():
            return DKDModel(open_backend(path, num_threads=1), keyframe_interval=keyframe_interval)
    out = {}
    for v in VIDEOS:
        pred, tracked = _track(factory, v)
        r = compare_tracks(pred, load_reference(DATA / VIDEOS[v][1]))
        out[v] = {k: r[k] for k in ("pck_torso", "mean_px_error", "median_px_error", "missed_frames", "frames")}
        out[v]["kernel_frames"] = tracked
    return out


DKD_VARIANTS = {"default": None, "keyframe_every_8": 8, "keyframes_only": 1}


def reevaluate(out: Path, seeds: list[int]) -> None:
    """Re-run the video evaluation of every finished run (after an evaluation change)."""
    for arm in ARMS:
        for s in seeds:
            f = out / f"{arm}_s{s}.json"
            if not f.is_file():
                continue
            res = json.loads(f.read_text())
            path = out / f"{arm}_s{s}.onnx"
            res["videos"] = ({"default": evaluate_videos(path, arm)} if arm == "per_frame" else
                             {k: evaluate_videos(path, arm, v) for k, v in DKD_VARIANTS.items()})
            f.write_text(json.dumps(res, indent=1, default=str))


def stage_pretrain(out: Path, steps: int) -> Path:
    """The shared per-frame starting point (seed 0), evaluated as a reference row."""
    ckpt, path, info = out / "pretrain.pt", out / "pretrain.onnx", out / "pretrain.json"
    if ckpt.is_file() and info.is_file():
        return ckpt
    torch.manual_seed(0)
    model = DKDPose(MODEL)
    res = {"steps": steps}
    if ckpt.is_file():
        model.load_state_dict(torch.load(ckpt))
    else:
        from edgepose.compression.data import LabelConfig, label_media, training_sources

        m = ASSETS / "models" / "movenet"
        labels = label_media(training_sources(ASSETS / "data"), LabelConfig(
            teacher=str(m / "movenet_thunder_fp32.onnx"), detector=str(m / "movenet_multipose_lightning_fp32.onnx")),
            ROOT / "runs" / "cache", num_threads=1)
        rep = pretrain_frames(model, labels, steps=steps, seed=0, threads=1)
        torch.save(model.state_dict(), ckpt)
        res.update(crops=len(labels), seconds=rep.seconds,
                   final_terms={k: float(np.mean(v[-25:])) for k, v in rep.terms.items()})
    export_heatmap_student(PerFrame(model), path)
    res.update(macs=onnx_macs(path), videos={"default": evaluate_videos(path, "per_frame")})
    info.write_text(json.dumps(res, indent=1))
    log.info("pretrained per-frame model: %s", json.dumps(res["videos"]))
    return ckpt


def stage_run(out: Path, clips, arm: str, seed: int, steps: int) -> dict:
    torch.manual_seed(seed)
    model = DKDPose(MODEL)
    model.load_state_dict(torch.load(out / "pretrain.pt"))  # same start for both arms
    cfg = DKDTrainConfig(steps=steps, seed=seed, threads=1, per_frame=arm == "per_frame")
    ckpt, trained = out / f"{arm}_s{seed}.pt", out / f"{arm}_s{seed}.train.json"
    if ckpt.is_file() and trained.is_file():  # resume: evaluate the saved model
        model.load_state_dict(torch.load(ckpt))
        rep = DistillReport(**json.loads(trained.read_text()))
    else:
        rep = train_dkd(model, clips, cfg)
        torch.save(model.state_dict(), ckpt)
        trained.write_text(json.dumps(rep.to_dict()))
    path = out / f"{arm}_s{seed}.onnx"
    if arm == "per_frame":
        exp = export_heatmap_student(PerFrame(model), path)
        videos = {"default": evaluate_videos(path, arm)}
    else:
        exp = export_dkd(model, path)
        videos = {k: evaluate_videos(path, arm, v) for k, v in DKD_VARIANTS.items()}
    res = {"arm": arm, "seed": seed, "train": cfg.to_dict(), "seconds": rep.seconds, "val": rep.val,
           "final_terms": {k: float(np.mean(v[-25:])) for k, v in rep.terms.items()},
           "parity": exp["max_abs_diff"], "macs": onnx_macs(path), "videos": videos}
    (out / f"{arm}_s{seed}.json").write_text(json.dumps(res, indent=1, default=str))
    log.info("%s seed %d: %s", arm, seed, json.dumps(videos["default"]))
    return res


def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def stage_report(out: Path, seeds: list[int], results_dir: Path) -> str:
    runs = {(a, s): json.loads((out / f"{a}_s{s}.json").read_text()) for a in ARMS for s in seeds
            if (out / f"{a}_s{s}.json").is_file()}
    pre = json.loads((out / "pretrain.json").read_text())
    ms = interleaved_ms(out / f"per_frame_s{seeds[0]}.onnx", out / f"dkd_s{seeds[0]}.onnx")
    tr = next(iter(runs.values()))["train"]
    lines = ["# DKD ablation: per-frame student vs DKD (same encoder) on the reference-track videos", "",
             "PoseEstimator video mode (ROI tracking from the model's own poses, tracks started / restarted from "
             "MoveNet MultiPose person boxes, One Euro off), ONNX Runtime 1 thread. Reference tracks are model "
             "outputs (tfjs MoveNet for pose_1, 120 frames at 30 fps; BlazePose full for pose_squats, 65 frames "
             "at 5 fps): agreement, not ground truth. PCK@0.2 x reference torso over 17 joints; a frame without "
             "a pose counts as a miss.", "",
             f"Both arms start from the same per-frame model (encoder + 1x1 head, {pre['steps']} steps on still "
             f"Thunder pseudo-labels) and fine-tune for {tr['steps']} steps x {tr['batch_size']} clips of "
             f"{tr['clip_length']} consecutive tracked frames (1412 Thunder-labelled frames of 22 licence-clean "
             f"training videos); seeds change data order and augmentation. Model {MODEL.to_dict()}.", "",
             "| model | seed | pose_1 PCK | pose_1 mean px | squats PCK | squats mean px | frames on kernels |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    pv = pre["videos"]["default"]
    lines.append(f"| pre-trained per-frame start (reference) | 0 | {pv['pose_1']['pck_torso']:.1f} | "
                 f"{pv['pose_1']['mean_px_error']:.1f} | {pv['pose_squats']['pck_torso']:.1f} | "
                 f"{pv['pose_squats']['mean_px_error']:.1f} | - |")
    summary = {}
    rows = [("per_frame", "default", "per-frame student"), ("dkd", "default", "DKD"),
            ("dkd", "keyframe_every_8", "DKD, keyframe every 8"),
            ("dkd", "keyframes_only", "DKD net, kernels off (every frame a keyframe)")]
    for a, variant, name in rows:
        rs = [runs[(a, s)] for s in seeds if (a, s) in runs and variant in runs[(a, s)]["videos"]]
        for r in rs:
            v = r["videos"][variant]
            share = [v[x].get("kernel_frames") for x in VIDEOS]
            share = "-" if share[0] is None else " / ".join(f"{100 * x:.0f} %" for x in share)
            lines.append(f"| {name} | {r['seed']} | {v['pose_1']['pck_torso']:.1f} | {_fmt(v['pose_1']['mean_px_error'])} | "
                         f"{v['pose_squats']['pck_torso']:.1f} | {_fmt(v['pose_squats']['mean_px_error'])} | {share} |")
        if rs:
            mean = {f"{vid}_{k}": float(np.mean([r["videos"][variant][vid][k] for r in rs]))
                    for vid in VIDEOS for k in ("pck_torso", "mean_px_error")}
            summary[name] = {**mean, "seeds": [r["seed"] for r in rs]}
            lines.append(f"| **{name}, mean of {len(rs)}** | | **{mean['pose_1_pck_torso']:.1f}** | "
                         f"**{mean['pose_1_mean_px_error']:.1f}** | **{mean['pose_squats_pck_torso']:.1f}** | "
                         f"**{mean['pose_squats_mean_px_error']:.1f}** | |")
    macs = {a: runs[(a, seeds[0])]["macs"] for a in ARMS if (a, seeds[0]) in runs}
    lines += ["", "Per-frame cost (one tracked frame; DKD includes pooling the next frame's kernels). MACs counted on "
              "the ONNX graph (Conv / MatMul / Gemm); ms interleaved in one run, ORT 1 thread, spinning off:", "",
              "| arm | MMAC | ms p50 | ms p90 |", "|---|---:|---:|---:|"]
    for a in ARMS:
        lines.append(f"| {a} | {macs.get(a, 0) / 1e6:.2f} | {ms[a]['p50']:.3f} | {ms[a]['p90']:.3f} |")
    lines += ["", f"DKD / per-frame: {macs['dkd'] / macs['per_frame']:.3f}x MACs, "
                  f"{ms['dkd']['p50'] / ms['per_frame']['p50']:.2f}x median ms.",
              f"Adversarial pose discriminator of the paper: not built. torch {torch.__version__}; "
              f"{time.strftime('%Y-%m-%d')}."]
    md = "\n".join(lines) + "\n"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "dkd_ablation.md").write_text(md)
    (results_dir / "dkd_ablation.json").write_text(json.dumps(
        {"pretrain": pre, "runs": [runs[k] for k in sorted(runs)], "summary": summary, "macs": macs, "ms": ms,
         "model": MODEL.to_dict()}, indent=1, default=str))
    return md


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", default="all", choices=["clips", "pretrain", "run", "reeval", "report", "all"])
    p.add_argument("--arm", choices=ARMS)
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps per arm")
    p.add_argument("--pretrain-steps", type=int, default=800)
    p.add_argument("--out", default=str(ROOT / "runs" / "dkd"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.stage == "reeval":
        reevaluate(out, a.seeds)
    elif a.stage != "report":
        clips = _clips()
        log.info("%d tracked teacher frames, %d segments", len(clips.images), len(np.unique(clips.segment)))
        if a.stage in ("pretrain", "run", "all"):
            stage_pretrain(out, a.pretrain_steps)
        if a.stage in ("run", "all"):
            for s in ([a.seed] if a.seed is not None else a.seeds):
                for arm in ([a.arm] if a.arm else ARMS):
                    stage_run(out, clips, arm, s, a.steps)
    if a.stage in ("report", "all"):
        sys.stdout.write(stage_report(out, a.seeds, Path(a.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
