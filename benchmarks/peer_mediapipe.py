"""edgepose beside MediaPipe Pose, interleaved in one run (issue 23).

Pipelines: edgepose's BlazePose-full card (the same two model files as MediaPipe's
model_complexity=1; the difference is the runtime around them), edgepose's default MoveNet
Lightning int8 ONNX, and MediaPipe Pose (mediapipe==0.10.21, legacy solutions API,
model_complexity=1) as a peer process in its own virtualenv. All at the same thread count.

* Video mode on pose_1, pose_squats, body3d_demo and vtest (``--frames N``: the first N of each):
  per-frame latency p50/p95 (decode excluded for all; MediaPipe's timed inside its process, pipe
  excluded), CPU ms per frame, frames with a person, jitter (acceleration error against the
  reference track where one exists, else the track's own mean acceleration), agreement with
  the reference (PCK@0.2 torso, mean px error). Every frame goes through every pipeline before
  the next is decoded, the order rotating each frame; latency ratios are per frame (round).
* Image mode on the 161-person evaluation set: each pipeline finds the person on the full image
  itself (a labelled person no prediction is matched to scores 0), PCK@0.2 x torso; plus, for
  edgepose cards, the GT-box-crop protocol of docs/results.md.

Needs the peer environment (``python -m edgepose.bench.peers setup mediapipe``) and the assets.

    python benchmarks/peer_mediapipe.py --out benchmarks/results/peer_mediapipe

Writes OUT/peer_mediapipe.{json,md,png}.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
from _common import RESULTS, add_assets_arg, run_meta, use_assets, write_report

from edgepose.bench.peers.compare import (EdgePipeline, PeerPipeline, common_frame_jitter, run_images, run_video,
                                          warm_up)

#: (name, clip, reference track or None), under ASSETS/data.
CLIPS = (("pose_1", "tfjs_testdata/pose_1.mp4", "tfjs_testdata/pose_1.json"),
         ("pose_squats", "tfjs_testdata/pose_squats.mp4", "tfjs_testdata/pose_squats.full.json"),
         ("body3d_demo", "mmpose_mini/demo_resources/body3d_demo.mp4", None),
         ("vtest", "opencv_doc/vtest.avi", None))
#: (pipeline name, edgepose card)
EDGE = (("edgepose blazepose-full", "blazepose-full"),
        ("edgepose movenet-lightning-int8-onnx", "movenet-lightning-int8-onnx"))
PEER = "mediapipe-pose-full"
STAGES = ("detect", "preprocess", "infer", "decode", "track", "smooth")


def _f(v, nd=1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def pooled(video: list[dict], name: str, base: str) -> dict:
    """Latency / CPU pooled over every clip's frames (from the per-clip raw samples)."""
    lat = np.concatenate([c["_raw"][name] for c in video])
    cpu = np.concatenate([c["_raw_cpu"][name] for c in video])
    out = {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "cpu_mean": float(cpu.mean())}
    if name != base:
        r = lat / np.concatenate([c["_raw"][base] for c in video])
        out.update(ratio=float(np.median(r)), ratio_p25=float(np.percentile(r, 25)),
                   ratio_p75=float(np.percentile(r, 75)))
    return out


def jitter(clip: dict, name: str) -> float | None:
    """Acceleration error against the reference where the clip has one, else the track's own mean
    acceleration over the frames where every pipeline has a pose."""
    ref = clip["pipelines"][name].get("reference")
    if ref and ref.get("accel_error") is not None:
        return ref["accel_error"]
    return clip.get("jitter_common_frames", {}).get(name)


def targets(doc: dict) -> list[str]:
    """The issue's "Done when" targets, met or missed, by how much."""
    pipes, video, img = doc["pooled"], doc["video"], doc["images"]["pipelines"]
    bp = EDGE[0][0]
    lines = []
    r = pipes[bp]["ratio"]
    pck_bp, pck_mp = img[bp]["pck_torso"], img[PEER]["pck_torso"]
    worse = []
    for c in video:
        jb, jm = jitter(c, bp), jitter(c, PEER)
        if jb is None or jm is None or not jb < jm:
            by = f", {100 * (jb / jm - 1):+.0f} %" if jb is not None and jm else ""
            worse.append(f"{c['clip']} ({_f(jb, 2)} vs {_f(jm, 2)} px/frame^2{by})")
    lines.append(f"- **T1 latency** {bp} / MediaPipe: {r:.2f}x (median per-frame ratio, all clips; target <= 1.0x): "
                 f"{'met' if r <= 1.0 else f'missed by {100 * (r - 1):.0f} %'}; per clip "
                 + ", ".join(f"{c['clip']} {c['ratios'][bp]['median']:.2f}x" for c in video))
    lines.append(f"- **T1 PCK** (image mode, own detection) {pck_bp:.1f} vs {pck_mp:.1f} (target: equal or better): "
                 f"{'met' if pck_bp >= pck_mp else f'missed by {pck_mp - pck_bp:.1f} points'}")
    lines.append(f"- **T1 jitter** lower on every clip: {'met' if not worse else 'missed on ' + ', '.join(worse)}")
    ok = [n for n, _ in EDGE if img[n]["pck_torso"] >= pck_mp]
    if ok:
        best = min(ok, key=lambda n: pipes[n]["p50"])
        r2 = pipes[best]["ratio"]
        lines.append(f"- **T2** fastest edgepose pipeline with PCK >= MediaPipe's ({pck_mp:.1f}): {best} "
                     f"({img[best]['pck_torso']:.1f}) at {r2:.2f}x MediaPipe's latency (target <= 0.5x): "
                     f"{'met' if r2 <= 0.5 else f'missed: {r2 / 0.5:.2f}x the target'}")
    else:
        fastest = min((n for n, _ in EDGE), key=lambda n: pipes[n]["p50"])
        lines.append(f"- **T2** no edgepose pipeline here matches MediaPipe's PCK ({pck_mp:.1f}); the fastest, {fastest}, "
                     f"runs at {pipes[fastest]['ratio']:.2f}x its latency with PCK {img[fastest]['pck_torso']:.1f} "
                     f"({img[fastest]['pck_torso'] - pck_mp:+.1f} points): missed")
    return lines


def markdown(doc: dict) -> list[str]:
    names = [n for n, _ in EDGE] + [PEER]
    img = doc["images"]["pipelines"]
    md = [f"Threads {doc['threads']} for every pipeline; frames per clip: {doc['frames'] or 'all'}; "
          f"host {doc['meta']['host']} ({doc['meta']['cpus']} CPUs, load {doc['meta']['load_avg_1m']}); "
          f"MediaPipe {doc['peer_info'].get('mediapipe')}, edgepose {doc['meta']['edgepose']}.", "",
          "| pipeline | PCK@0.2 torso, own detection (161 people) | people found | PCK GT-box crops | "
          "video latency p50 / p95 ms | CPU ms / frame | latency / MediaPipe (per frame, IQR) |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        p, i = doc["pooled"][n], img[n]
        ratio = f"{p['ratio']:.2f}x ({p['ratio_p25']:.2f}-{p['ratio_p75']:.2f})" if "ratio" in p else "1"
        md.append(f"| {n} | {_f(i['pck_torso'])} | {i['people_found']}/{doc['images']['people']} | "
                  f"{_f(doc['gt_crop'].get(n))} | {p['p50']:.1f} / {p['p95']:.1f} | {p['cpu_mean']:.1f} | {ratio} |")
    md += ["", "Per clip (video mode; jitter: acceleration error in px/frame^2 against the reference track where "
           "there is one, else the track's own mean acceleration over the frames where all three pipelines have "
           "a pose):", "",
           "| clip | pipeline | p50 ms | p95 ms | CPU ms | / MediaPipe | frames with person | jitter | ref PCK@0.2 | ref px error |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in doc["video"]:
        for n in names:
            row = c["pipelines"][n]
            ref = row.get("reference") or {}
            ratio = c["ratios"].get(n, {}).get("median")
            common = "" if row.get("reference") else f"; jitter on {c['jitter_common_frames']['frames']} common"
            md.append(f"| {c['clip']} ({c['frames']} fr{common}) | {n} | {_f(row['latency_ms']['p50'])} | "
                      f"{_f(row['latency_ms']['p95'])} | {_f(row['cpu_ms']['mean'])} | {_f(ratio, 2)} | "
                      f"{row['frames_with_person']} | {_f(jitter(c, n), 2)} | {_f(ref.get('pck_torso'))} | "
                      f"{_f(ref.get('mean_px_error'))} |")
    md += ["", "Where edgepose's time goes (mean ms per frame; detect counts only the frames it ran on, "
           "shown as mean over those x how many):", "",
           "| clip | pipeline | " + " | ".join(STAGES) + " |", "|---|---|" + "---:|" * len(STAGES)]
    for c in doc["video"]:
        for n, _ in EDGE:
            st = c["pipelines"][n]["stages_ms_mean"]
            cnt = c["pipelines"][n].get("stage_counts", {})
            cells = [(f"{st[s]:.2f} x{cnt.get(s)}" if s == "detect" and s in st else _f(st.get(s), 2)) for s in STAGES]
            md.append(f"| {c['clip']} | {n} | " + " | ".join(cells) + " |")
    md += ["", "Targets (issue 23, all from this run):", "", *targets(doc)]
    return md


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for n, p in doc["pooled"].items():
        pck = doc["images"]["pipelines"][n]["pck_torso"]
        ax.scatter(p["p50"], pck, s=50, marker="s" if n == PEER else "o")
        ax.annotate(n, (p["p50"], pck), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(f"video latency p50, ms/frame ({doc['threads']} thread(s), all clips)")
    ax.set_ylabel("PCK@0.2 torso, own detection (161 people), %")
    ax.set_title("edgepose vs MediaPipe Pose (one interleaved run)")
    ax.margins(x=0.3, y=0.15)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_assets_arg(ap)
    ap.add_argument("--out", default=str(RESULTS / "peer_mediapipe"), help="folder for peer_mediapipe.{json,md,png}")
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames of each clip (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="threads for every pipeline (default 1: see docs/peers.md)")
    ap.add_argument("--clips", default=",".join(c[0] for c in CLIPS), help="comma-separated subset of the clips")
    ap.add_argument("--no-images", action="store_true", help="skip image mode (PCK then comes out empty)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    root = use_assets(args.assets)
    data = root / "data"
    from edgepose.eval.video import ReferenceTrack, load_reference

    pipes = [EdgePipeline(n, card, threads=args.threads) for n, card in EDGE]
    pipes.insert(1, PeerPipeline(PEER, PEER, threads=args.threads))
    peer_info = {k: v for k, v in pipes[1].proc.info.items() if k not in ("ok", "op")}
    doc = {"meta": run_meta(), "threads": args.threads, "frames": args.frames, "peer_info": peer_info,
           "pipelines": {p.name: getattr(p, "card", getattr(p, "peer", "")) for p in pipes}, "video": []}
    try:
        from edgepose.eval.runner import _read_rgb

        warm_up(pipes, _read_rgb(data / "tfjs_testdata" / "pose.jpg"))
        wanted = args.clips.split(",")
        for name, clip, ref in CLIPS:
            if name not in wanted:
                continue
            reference = None
            if ref:
                reference = load_reference(data / ref)
                if args.frames:
                    reference = ReferenceTrack(reference.keypoints[:args.frames], reference.source_format, reference.path)
            raw: dict = {}
            res = run_video(pipes, data / clip, max_frames=args.frames, reference=reference, raw=raw)
            res["_raw"], res["_raw_cpu"] = raw["ms"], raw["cpu_ms"]
            res["jitter_common_frames"] = common_frame_jitter(raw["tracks"], [p.name for p in pipes])
            print(f"{name}: {res['frames']} frames in {res['seconds']} s", flush=True)
            doc["video"].append(res)
        doc["pooled"] = {p.name: pooled(doc["video"], p.name, PEER) for p in pipes}
        if not args.no_images:
            from edgepose.eval.datasets import load_dataset, resolve_names
            from edgepose.eval.runner import ALL, evaluate

            people = [p for n in resolve_names(None) for p in load_dataset(n, data)]
            doc["images"] = run_images(pipes, people)
            doc["gt_crop"] = {p.name: next(r.pck_torso for r in evaluate(p.model, root=data, progress=False).rows
                                           if r.name == ALL) for p in pipes if isinstance(p, EdgePipeline)}
            print(f"images: {doc['images']['images']} images, {doc['images']['people']} people", flush=True)
        else:
            doc["images"] = {"people": 0, "pipelines": {p.name: {"pck_torso": None, "people_found": 0} for p in pipes}}
            doc["gt_crop"] = {}
    finally:
        for p in pipes:
            p.close()
    for c in doc["video"]:
        c.pop("_raw"), c.pop("_raw_cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(doc) if not args.no_images else ["(image mode skipped: run without --no-images for the table)"]
    doc["targets"] = targets(doc) if not args.no_images else []
    if not args.no_images:
        plot(doc, out / "peer_mediapipe.png")
        md += ["", "![latency vs PCK](peer_mediapipe.png)"]
    write_report(out, "peer_mediapipe", doc, md)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")
    raise SystemExit(main())
