"""Scene specialisation held out in time (issue 21): generic vs specialised Lightning int8 per scene.

    python benchmarks/scene_adapt.py                       # all scenes, 150 steps, ~2-3 min per scene on an idle 2-core host
    python benchmarks/scene_adapt.py --scenes vtest --steps 20 --w-ref 0   # an ablation of one AdaptConfig default

Each scene is one video: ``edgepose adapt``'s library call (:func:`edgepose.compression.adapt.adapt`)
runs on its adaptation frames (themselves split in time: the first 80 % train, the last 20 %
gate), then every model is scored on the later **evaluation** frames, which no step has seen, against
the teacher (MoveNet Thunder) on the same person crops: PCK@0.2 torso and disagreement = 100 - PCK.

Scenes: vtest (adapt 0-599, evaluate 600-794), body3d_demo (0-298 / 299-398) and seven shippable
train_extra videos (compression/data/shippable.py ALLOWED) split 75 % / 25 % by time.

Models: ``generic`` = the shipped Lightning int8 (edgepose/data/movenet_lightning_int8_qdq.onnx);
``recalibrated`` = the same fp32 weights quantised with the scene's own calibration crops (no
training: what calibration alone buys); ``candidate`` = the fine-tuned Lightning int8;
``specialised`` = what the device runs after the gate: the candidate when accepted, else generic;
``candidate_stem_float`` = the candidate's fp32 quantised with its first ``--stem-float`` convolutions
float (measured only; the gate judged the full int8 candidate unless ``--float-stem`` is given).
AdaptConfig's defaults (w_ref, label stride, gate evidence) apply unless an option overrides them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import _common

#: (name, file under data/, adapt range, evaluation range); None ranges: 75 % / 25 % of the clip.
SCENES = [
    ("vtest", "opencv_doc/vtest.avi", (0, 600), (600, 795)),
    ("body3d_demo", "mmpose_mini/demo_resources/body3d_demo.mp4", (0, 299), (299, 399)),
    ("one_by_one", "train_extra/intel_sample_videos/one-by-one-person-detection.mp4", None, None),
    ("sam2_juggle", "train_extra/gh_facebookresearch_sam2/demo_data_gallery_05_default_juggle.mp4", None, None),
    ("sam2_bedroom", "train_extra/gh_facebookresearch_sam2/notebooks_videos_bedroom.mp4", None, None),
    ("sports2d", "train_extra/pypi_sports2d/sports2d_demo.mp4", None, None),
    ("pose2sim_multi_cam01", "train_extra/pypi_pose2sim/Demo_MultiPerson_cam01.mp4", None, None),
    ("pose2sim_single_cam02", "train_extra/pypi_pose2sim/Demo_SinglePerson_cam02.mp4", None, None),
    ("asl_book", "train_extra/intel_sample_videos/asl_gestures_book.mkv", None, None),
]


def ranges(path: str, adapt_r, eval_r):
    from edgepose.compression.adapt.scene import frame_count

    if adapt_r is not None:
        return adapt_r, eval_r
    n = frame_count(path)
    cut = int(round(n * 0.75))
    return (0, cut), (cut, n)


def recalibrated(fp32: str, labels, out: Path, n: int = 64) -> Path:
    """The generic fp32 weights quantised with the scene's training crops (same quantiser settings)."""
    from edgepose.compression.data.dataset import calibration_crops
    from edgepose.compression.quantize import QuantizeConfig, quantize

    dst = out / "recalibrated_int8.onnx"
    quantize(fp32, dst, QuantizeConfig(num_calibration=n), calibration=calibration_crops(labels, n, out_size=192))
    return dst


def run_scene(root: Path, name: str, rel: str, adapt_r, eval_r, args) -> dict:
    from edgepose.compression.adapt import AdaptConfig, adapt, agreement
    from edgepose.compression.adapt.scene import label_segment, split_in_time
    from edgepose.compression.data.sources import MediaItem
    from edgepose.compression.default_model import DATA_DIR, MODEL_NAME

    path = str(root / "data" / rel)
    adapt_r, eval_r = ranges(path, adapt_r, eval_r)
    out = Path(args.work) / name
    over = {k: getattr(args, k) for k in ("w_ref", "label_stride", "gate_min_crops", "gate_max_risk", "float_stem", "augment")
            if getattr(args, k, None) is not None}
    cfg = AdaptConfig(steps=args.steps, lr=args.lr, threads=args.threads, **over)
    teacher, det = _common.movenet(root, "movenet_thunder_fp32.onnx"), _common.movenet(root, "movenet_multipose_lightning_fp32.onnx")
    fp32, generic = _common.movenet(root, "movenet_lightning_fp32.onnx"), str(DATA_DIR / MODEL_NAME)
    res = adapt([MediaItem(path, "video", *adapt_r)], out, cfg, teacher=teacher, detector=det, base_fp32=fp32,
                current=generic, cache_dir=args.cache, scene_name=name, progress=False)
    ev = label_segment([MediaItem(path, "video", *eval_r)], teacher=teacher, detector=det, stride=1,
                       max_frames=args.eval_frames, max_people=cfg.max_people, cache_dir=args.cache,
                       min_person_score=cfg.min_person_score, progress=False, threads=args.threads)
    train_items, _ = split_in_time([MediaItem(path, "video", *adapt_r)], cfg.gate_fraction)
    train_labels = label_segment(train_items, teacher=teacher, detector=det, stride=cfg.label_stride,
                                 max_frames=cfg.max_frames, max_people=cfg.max_people, cache_dir=args.cache,
                                 min_person_score=cfg.min_person_score, progress=False,
                                 threads=cfg.threads)  # cached by adapt()
    models = {"generic": generic, "recalibrated": str(recalibrated(fp32, train_labels, out)),
              "candidate": res.candidate_int8, "generic_fp32": fp32, "candidate_fp32": res.candidate_fp32}
    if args.stem_float and not cfg.float_stem:  # lever: the stem kept float (measured, not what the gate ran)
        from edgepose.compression.adapt.scene import quantize_scene
        from edgepose.compression.data.dataset import calibration_crops

        models["candidate_stem_float"] = str(quantize_scene(
            res.candidate_fp32, out / "candidate_stemfloat_int8.onnx",
            calibration_crops(train_labels, cfg.num_calibration, out_size=192, seed=cfg.seed),
            num_calibration=cfg.num_calibration, float_stem=args.stem_float))
    scores = {k: agreement(p, ev, threads=args.threads).to_dict() for k, p in models.items()}
    scores["specialised"] = scores["candidate"] if res.accepted else scores["generic"]
    g, s = scores["generic"]["disagreement"], scores["specialised"]["disagreement"]
    row = {"scene": name, "file": rel, "config": cfg.to_dict(), "adapt_frames": list(adapt_r), "eval_frames": list(eval_r),
           "train_crops": res.crops["train"], "gate_crops": res.crops["gate"], "eval_crops": len(ev),
           "gate": res.gate, "accepted": res.accepted, "scores": scores,
           "relative_cut": round(100.0 * (g - s) / g, 1) if g > 0 else float("nan"),
           "training": res.training, "seconds": res.seconds}
    if args.latency:
        from edgepose.compression.default_model import _interleaved_latency

        lat = {"generic": generic, "specialised": res.candidate_int8}
        if "candidate_stem_float" in models:
            lat["candidate_stem_float"] = models["candidate_stem_float"]
        row["latency_ms_1_thread"] = {k: round(v, 2) for k, v in _interleaved_latency(lat, 1, rounds=100).items()}
    return row


def markdown(rows: list[dict], meta: dict) -> list[str]:
    c = rows[0]["config"] if rows else {}
    lines = ["# Scene specialisation, held out in time", "",
             f"Fine-tuning: {meta['steps']} steps x batch {c.get('batch_size', 16)}, lr {meta['lr']:g} (AdamW, cosine), "
             f"w_ref {c.get('w_ref')}, label stride {c.get('label_stride')}, augment {c.get('augment', 'full')}, through the Trainer; gate: >= "
             f"{c.get('gate_min_crops')} gate crops, worse in <= {100 * c.get('gate_max_risk', 0):.0f} % of a paired "
             "frame bootstrap; reference = MoveNet Thunder on the held-out frames' person crops; disagreement = "
             "100 - PCK@0.2 torso vs the teacher.", "",
             "| scene | eval frames | crops train/gate/eval | generic fp32 | generic int8 | recalibrated int8 | "
             "candidate fp32 | candidate int8 | cand. stem float | gate | specialised int8 | relative cut |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    keys = ("generic_fp32", "generic", "recalibrated", "candidate_fp32", "candidate", "candidate_stem_float")

    def cell(s, k):
        return f"{s[k]['disagreement']:.2f}" if k in s else "-"

    for r in rows:
        s = r["scores"]
        lines.append(f"| {r['scene']} | {r['eval_frames'][0]}-{r['eval_frames'][1] - 1} | {r['train_crops']}/"
                     f"{r['gate_crops']}/{r['eval_crops']} | " + " | ".join(cell(s, k) for k in keys) +
                     f" | {'accepted' if r['accepted'] else 'refused'} | {s['specialised']['disagreement']:.2f} | "
                     f"{r['relative_cut']:+.1f} % |")
    if rows:
        mean = {k: float(np.mean([r["scores"][k]["disagreement"] for r in rows]))
                for k in (*keys, "specialised") if all(k in r["scores"] for r in rows)}
        cut = 100.0 * (mean["generic"] - mean["specialised"]) / mean["generic"]
        worse = [r["scene"] for r in rows if r["scores"]["specialised"]["disagreement"] > r["scores"]["generic"]["disagreement"]]
        lines += ["| **mean** | | | " + " | ".join(f"{mean[k]:.2f}" if k in mean else "-" for k in keys) +
                  f" | | {mean['specialised']:.2f} | {cut:+.1f} % |", "",
                  f"Relative cut of the mean disagreement: {cut:.1f} % (target >= 40 %); mean of per-scene cuts "
                  f"{np.nanmean([r['relative_cut'] for r in rows]):.1f} % (scenes where generic already agrees fully left out); specialised worse than generic on: "
                  f"{', '.join(worse) or 'none'}."]
        meta["mean_disagreement"] = {k: round(v, 3) for k, v in mean.items()}
        meta["relative_cut_of_mean"] = round(cut, 2)
        meta["worse_on"] = worse
    lines += ["", "Gate reasons: " + "; ".join(f"{r['scene']}: {r['gate'].get('reason', '-')}" for r in rows) + "."]
    lat = [r for r in rows if "latency_ms_1_thread" in r]
    for r in lat:
        lines.append(f"\nLatency ({r['scene']}, 1 thread, interleaved): {r['latency_ms_1_thread']}")
    if "total_seconds" in meta:
        lines.append(f"\nTotal time: {meta['total_seconds'] / 60:.1f} min for {len(rows)} scene(s) on {meta.get('cpus')} CPUs.")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_assets_arg(p)
    _common.add_out_arg(p)
    p.add_argument("--scenes", nargs="*", default=None, help=f"subset of {[s[0] for s in SCENES]}")
    p.add_argument("--steps", type=int, default=150, help="fine-tuning steps per scene (default 150, AdaptConfig's)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--w-ref", type=float, default=None, help="online KD from the frozen generic model "
                   "(default: AdaptConfig's; 0 = off)")
    p.add_argument("--label-stride", type=int, default=None, help="training-segment label stride (default: AdaptConfig's)")
    p.add_argument("--gate-min-crops", type=int, default=None, help="gate evidence (default: AdaptConfig's)")
    p.add_argument("--gate-max-risk", type=float, default=None, help="gate evidence (default: AdaptConfig's)")
    p.add_argument("--augment", choices=("light", "full", "none"), default=None,
                   help="training augmentation (default: AdaptConfig's)")
    p.add_argument("--float-stem", type=int, default=None, help="body convs kept float in the candidate (default: 0)")
    p.add_argument("--stem-float", type=int, default=2, help="also score the candidate with its first n convs "
                   "float (a measured column, not gated; 0 = off)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-frames", type=int, default=100, help="labelled evaluation frames per scene at most")
    p.add_argument("--work", default="runs/scene_adapt", help="candidate models and adapt reports per scene")
    p.add_argument("--cache", default="runs/cache_adapt", help="teacher label cache")
    p.add_argument("--no-latency", dest="latency", action="store_false")
    args = p.parse_args(argv)
    root = _common.use_assets(args.assets)
    chosen = [s for s in SCENES if args.scenes is None or s[0] in args.scenes]
    meta = {**_common.run_meta(), "steps": args.steps, "lr": args.lr}
    rows, t0 = [], time.perf_counter()
    for i, (name, rel, a, e) in enumerate(chosen):
        print(f"[{i + 1}/{len(chosen)}] {name}", flush=True)
        try:
            rows.append(run_scene(root, name, rel, a, e, argparse.Namespace(**{**vars(args),
                                                                                 "latency": args.latency and i == 0})))
        except Exception as exc:  # one scene without people must not lose the others: say so in the report
            print(f"  {name}: skipped: {type(exc).__name__}: {exc}", flush=True)
            meta.setdefault("skipped", {})[name] = f"{type(exc).__name__}: {exc}"
            continue
        r = rows[-1]
        meta["total_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"  generic {r['scores']['generic']['disagreement']:.2f} -> specialised "
              f"{r['scores']['specialised']['disagreement']:.2f} ({'accepted' if r['accepted'] else 'refused'})", flush=True)
        md = markdown(rows, meta)
        _common.write_report(args.out, "scene_adapt", {"meta": meta, "rows": rows}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
