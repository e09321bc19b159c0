"""Training tracks for the temporal models: edge-model tracks paired with teacher tracks.

Only licence-clean training material is used ($EDGEPOSE_ASSETS/ASSETS.md "Training and calibration" and
train_extra/PROVENANCE.md): body3d_demo frames 0-298 and permissively licensed train_extra
videos (CC-BY-4.0, Apache-2.0, BSD-3, MIT). The evaluation clips (pose_1, pose_squats,
body3d_demo 299-398, vtest 600-794) are never read here.

Each video yields a pair of tracks over the same frames: the edge model's (input, noisy)
and the teacher's (target). Tracks are cached as .npz (``runs/temporal_tracks`` by default).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepose.assets import assets_dir
from edgepose.eval.temporal import Track, cached_model_track
from edgepose.errors import MissingFileError

log = logging.getLogger(__name__)

#: Teacher (targets) and edge model (inputs).
TEACHER = "movenet-thunder-fp32"
EDGE = "movenet-lightning-int8"

_TX = "data/train_extra/"
#: (video relative to the assets folder, start, stop): licence-clean training clips.
TRAIN_VIDEOS: tuple[tuple[str, int, int | None], ...] = (
    ("data/mmpose_mini/demo_resources/body3d_demo.mp4", 0, 299),  # Apache-2.0; 299+ is eval
    (_TX + "gh_Jeff-sjtu_HybrIK/examples_taiji.mp4", 0, None),  # MIT
    (_TX + "gh_facebookresearch_sam2/demo_data_gallery_05_default_juggle.mp4", 0, None),  # Apache
    (_TX + "gh_facebookresearch_sam2/notebooks_videos_bedroom.mp4", 0, None),  # Apache
    (_TX + "gh_facebookresearch_sam2/demo_data_gallery_01_dog.mp4", 0, None),  # Apache
    (_TX + "gh_open-mmlab_mmskeleton/resource_data_example_clean_and_jerk.mp4", 0, None),  # Apache
    (_TX + "gh_open-mmlab_mmskeleton/resource_data_example_ta_chi.mp4", 0, None),  # Apache
    (_TX + "gh_open-mmlab_mmaction2/demo_demo_skeleton.mp4", 0, None),  # Apache
    (_TX + "gh_open-mmlab_mmaction2/mmaction2_demo.mp4", 0, None),  # Apache
    (_TX + "gh_open-mmlab_mmaction2/demo_test_video_structuralize.mp4", 0, None),  # Apache
    (_TX + "gh_open-mmlab_mmhuman3d/demo_resources_single_person_demo.mp4", 0, None),  # Apache
    (_TX + "pypi_pose2sim/Demo_SinglePerson_cam01.mp4", 0, None),  # BSD-3
    (_TX + "pypi_pose2sim/Demo_SinglePerson_cam02.mp4", 0, None),
    (_TX + "pypi_pose2sim/Demo_SinglePerson_cam03.mp4", 0, None),
    (_TX + "pypi_pose2sim/Demo_SinglePerson_cam04.mp4", 0, None),
    (_TX + "pypi_sports2d/sports2d_demo.mp4", 0, None),  # BSD-3
    (_TX + "intel_sample_videos/one-by-one-person-detection.mp4", 0, 700),  # CC-BY-4.0
) + tuple((_TX + f"intel_sample_videos/asl_gestures_{w}.mkv", 0, None) for w in (
    "again", "bird", "book", "brother", "eat", "help", "hungry", "learn", "milk", "night", "no",
    "please", "school", "sister", "sorry", "student", "thanks", "walk", "want", "yes"))


@dataclass
class Pair:
    """Edge and teacher tracks of one training clip (same frames)."""

    name: str
    edge: Track
    teacher: Track

    @property
    def fps(self) -> float:
        return self.teacher.fps


def collect_pairs(cache_dir: str | Path = "runs/temporal_tracks", *, assets: str | Path | None = None,
                  videos=TRAIN_VIDEOS, num_threads: int = 1) -> list[Pair]:
    """Run (or load from the cache) the edge model and the teacher on every training video."""
    root = assets_dir(assets, check=False)
    pairs = []
    for rel, start, stop in videos:
        path = root / rel
        if not path.is_file():
            raise MissingFileError(f"training video not found: {path}")
        kw = dict(start=start, stop=stop, num_threads=num_threads)
        teacher = cached_model_track(cache_dir, TEACHER, path, **kw)
        edge = cached_model_track(cache_dir, EDGE, path, **kw)
        pairs.append(Pair(Path(rel).stem, edge, teacher))
        log.info("%s: %d frames, edge present %d, teacher present %d", Path(rel).stem, len(edge),
                 edge.present.sum(), teacher.present.sum())
    return pairs


def segments(mask: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, stop) runs of True in ``mask`` at least ``min_len`` long."""
    out, start = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - start >= min_len:
                out.append((start, i))
            start = None
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ps = collect_pairs()
    both = sum(int((p.edge.present & p.teacher.present).sum()) for p in ps)
    log.info("%d clips, %d frames with both tracks", len(ps), both)
