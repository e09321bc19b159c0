"""Multi-person evaluation: OKS-AP on the multi-person images, id switches on a crowded video.

OKS-AP (pycocotools COCOeval, keypoints, COCO-17 sigmas) is computed bottom-up: every person
the model reports in an image is a detection, scored by its person score, against every
annotated person of that image (crowd regions and people without labelled keypoints are
ignored, as COCOeval does). Sets: ``coco_mini`` (val2017 + train2017: all people annotated),
``crowdpose`` and ``ochuman`` (the mmpose_mini subsets: only some people of each image are
annotated, so unannotated people count as false positives: read their AP as a lower bound and
their AR as the recall). CrowdPose's 14 joints map to COCO-17 (no face points: OKS uses the
12 body joints it has).

Id switches per 100 frames on a video without ground-truth tracks are a proxy, counted from the
tracker's output alone (jumps and fragments: :func:`edgepose.eval.tracking.id_switches`).

Usage (from the repository root; the data root defaults to $EDGEPOSE_DATA, else $EDGEPOSE_ASSETS/data)::

    python benchmarks/multiperson_eval.py --video $EDGEPOSE_ASSETS/data/openpose_media/video.avi

Writes benchmarks/results/multiperson.{json,md} (--out-dir DIR to change the folder).

Model names: registered multi-person cards: ``movenet-multipose`` (bottom-up, direct),
``topdown-thunder`` / ``topdown-lightning`` (BlazePose person detector -> MoveNet per person),
``topdown-mp-thunder`` / ``topdown-mp-lightning`` (MoveNet MultiPose boxes as the detector).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import RESULTS

from edgepose.assets import assets_dir
from edgepose.eval.datasets import map_keypoints
from edgepose.eval.tracking import id_switches
from edgepose.models import load_model
from edgepose.multi import MultiPoseEstimator, MultiPoseOptions

#: set -> (annotation json, image folder, keypoint format), relative to the data root.
SETS = {
    "coco_mini": [("coco_mini/annotations/person_keypoints_val2017.json", "coco_mini/val2017", "coco17"),
                  ("coco_mini/annotations/person_keypoints_train2017.json", "coco_mini/train2017", "coco17")],
    "crowdpose": [("mmpose_mini/crowdpose/test_crowdpose.json", "mmpose_mini/crowdpose", "crowdpose14")],
    "ochuman": [("mmpose_mini/ochuman/test_ochuman.json", "mmpose_mini/ochuman", "coco17")],
}
DEFAULT_MODELS = ("movenet-multipose", "topdown-thunder", "topdown-lightning", "topdown-mp-thunder",
                  "topdown-mp-lightning")


def open_model(name: str, threads: int):
    """A registered multi-person card."""
    return load_model(name, num_threads=threads)


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_set(root: Path, name: str):
    """(images [(image_id, path)], ground truth annotations in COCO-17) of one set."""
    images, anns, next_id = [], [], 1
    for k, (ann_file, img_dir, fmt) in enumerate(SETS[name]):
        data = json.loads((root / ann_file).read_text())
        offset = k * 10_000_000  # keep image ids unique across the two coco_mini splits
        for img in data["images"]:
            images.append((img["id"] + offset, root / img_dir / img["file_name"]))
        for a in data["annotations"]:
            kps = map_keypoints(a["keypoints"], fmt)
            x, y, w, h = a["bbox"]
            anns.append({
                "id": next_id, "image_id": a["image_id"] + offset, "category_id": 1,
                "iscrowd": int(a.get("iscrowd", 0)), "bbox": [x, y, w, h],
                "area": float(a.get("area") or w * h),
                "num_keypoints": int((kps[:, 2] > 0).sum()),
                "keypoints": np.column_stack([kps[:, :2], (kps[:, 2] > 0) * 2]).ravel().tolist(),
            })
            next_id += 1
    return images, anns


def coco_ap(images, anns, dets) -> dict[str, float]:
    """COCOeval keypoint AP / AP50 / AP75 / AR (percent) of ``dets`` against ``anns``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i} for i, _ in images], "annotations": anns,
                      "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
        gt.createIndex()
        if not dets:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0}
        ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {"AP": 100 * s[0], "AP50": 100 * s[1], "AP75": 100 * s[2], "AR": 100 * s[5]}


def eval_images(model, images) -> tuple[list[dict], list[float]]:
    est = MultiPoseEstimator(model, options=MultiPoseOptions(max_people=20))
    dets, ms = [], []
    for image_id, path in images:
        img = read_rgb(path)
        t = time.perf_counter()
        res = est.detect(img)
        ms.append((time.perf_counter() - t) * 1e3)
        for p in res.poses:
            kp = np.column_stack([p.keypoints, np.ones(17)]).ravel().tolist()
            dets.append({"image_id": image_id, "category_id": 1, "keypoints": kp, "score": float(p.score)})
    return dets, ms


def eval_video(model, video: str, *, max_frames: int | None, gap: int, detect_interval_ms: int) -> dict:
    from edgepose.video.sources import VideoFileSource

    est = MultiPoseEstimator(model, options=MultiPoseOptions(running_mode="video",
                                                             detect_interval_ms=detect_interval_ms))
    tracks: dict[int, list] = {}
    ms, n, people = [], 0, 0
    with VideoFileSource(video, max_frames=max_frames) as src:
        for fr in src:
            t = time.perf_counter()
            res = est.detect_for_video(fr.image, fr.timestamp_ms)
            ms.append((time.perf_counter() - t) * 1e3)
            for p in res.poses:
                tracks.setdefault(p.track_id, []).append((fr.index, p.box))
            people += len(res.poses)
            n += 1
    sw = id_switches(tracks, gap=gap)
    return {"frames": n, "ids": len(tracks), "people_per_frame": round(people / max(n, 1), 2),
            **sw, "switches_per_100": round(100.0 * sw["switches"] / max(n, 1), 2),
            "ids_per_100": round(100.0 * len(tracks) / max(n, 1), 2),
            "ms_median": round(statistics.median(ms), 1) if ms else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None,
                   help="folder holding coco_mini/ and mmpose_mini/ (default: $EDGEPOSE_DATA, else $EDGEPOSE_ASSETS/data)")
    p.add_argument("--sets", default="coco_mini,crowdpose,ochuman")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--video", default=None, help="video for id switches (e.g. openpose_media/video.avi)")
    p.add_argument("--video-models", default=None, help="models for the video (default: --models)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--gap", type=int, default=25, help="fragment window in frames (25 = 0.5 s at 50 fps)")
    p.add_argument("--detect-interval-ms", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", default=str(RESULTS), help="write multiperson.json and multiperson.md here")
    args = p.parse_args(argv)
    root = Path(args.data_root or os.environ.get("EDGEPOSE_DATA") or assets_dir() / "data")
    models = [m for m in args.models.split(",") if m]
    report = {"data_root": str(root), "threads": args.threads, "images": {}, "video": {}}
    for set_name in [s for s in args.sets.split(",") if s]:
        images, anns = load_set(root, set_name)
        people = sum(1 for a in anns if not a["iscrowd"] and a["num_keypoints"] > 0)
        for name in models:
            with open_model(name, args.threads) as model:
                dets, ms = eval_images(model, images)
            ap = coco_ap(images, anns, dets)
            row = {**{k: round(v, 1) for k, v in ap.items()}, "images": len(images), "people": people,
                   "detections": len(dets), "ms_median": round(statistics.median(ms), 1)}
            report["images"].setdefault(set_name, {})[name] = row
            print(f"{set_name:10s} {name:20s} AP {row['AP']:5.1f} AP50 {row['AP50']:5.1f} "
                  f"AR {row['AR']:5.1f} ({len(images)} images, {people} people, {row['ms_median']} ms)",
                  flush=True)
    if args.video:
        for name in [m for m in (args.video_models or args.models).split(",") if m]:
            with open_model(name, args.threads) as model:
                row = eval_video(model, args.video, max_frames=args.max_frames, gap=args.gap,
                                 detect_interval_ms=args.detect_interval_ms)
            report["video"][name] = row
            print(f"video {name:20s} {row}", flush=True)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "multiperson.json").write_text(json.dumps(report, indent=2))
        (out / "multiperson.md").write_text(markdown(report))
    return 0


def markdown(report: dict) -> str:
    lines = ["# Multi-person evaluation", "", "| set | model | AP | AP50 | AP75 | AR | ms (median) |",
             "|---|---|---|---|---|---|---|"]
    for s, rows in report["images"].items():
        for m, r in rows.items():
            lines.append(f"| {s} | {m} | {r['AP']} | {r['AP50']} | {r['AP75']} | {r['AR']} | {r['ms_median']} |")
    if report["video"]:
        lines += ["", "| video model | frames | ids | switches / 100 frames (jumps + fragments) | ms |",
                  "|---|---|---|---|---|"]
        for m, r in report["video"].items():
            lines.append(f"| {m} | {r['frames']} | {r['ids']} | {r['switches_per_100']} "
                         f"({r['jumps']} + {r['fragments']}) | {r['ms_median']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
