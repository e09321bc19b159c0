"""Training tracks for the temporal models: edge-model tracks paired with teacher tracks.

Only material a shipped model may be trained on is used: :data:`TRAIN_VIDEOS` must lie within
:mod:`edgepose.compression.data.shippable` (body3d_demo frames 0-298 and videos of the
train_extra folders in its ``ALLOWED`` list: Apache-2.0, BSD-3, MIT, CC-BY-4.0; see
$EDGEPOSE_ASSETS/ASSETS.md "Rules of use" and train_extra/PROVENANCE.md). This is checked when
the module is imported (:func:`check_shippable`) and by tests/test_temporal_data_licence.py.
Until 2026-12 the list also held six videos of folders shippable.py EXCLUDES (mmaction2 and
mmskeleton: Kinetics-style YouTube clips; HybrIK's taiji clip): removed, and the shipped temporal
networks retrained without them (docs/research-notes.md L1). The evaluation clips (pose_1,
pose_squats, body3d_demo 299-398, vtest 600-794) are never read here.

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
from edgepose.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

#: Teacher (targets) and edge model (inputs).
TEACHER = "movenet-thunder-fp32"
EDGE = "movenet-lightning-int8"

_TX = "data/train_extra/"
_DATA = "data/"
#: (video relative to the assets folder, start, stop): the training clips. Every entry must be
#: shippable (:func:`check_shippable`): a video of a folder that shippable.py does not ALLOW never
#: goes here, whatever the licence of the repository it came with.
TRAIN_VIDEOS: tuple[tuple[str, int, int | None], ...] = (
    ("data/mmpose_mini/demo_resources/body3d_demo.mp4", 0, 299),  # Apache-2.0; 299+ is eval
    (_TX + "gh_facebookresearch_sam2/demo_data_gallery_05_default_juggle.mp4", 0, None),  # Apache
    (_TX + "gh_facebookresearch_sam2/notebooks_videos_bedroom.mp4", 0, None),  # Apache
    (_TX + "gh_facebookresearch_sam2/demo_data_gallery_01_dog.mp4", 0, None),  # Apache
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


def unshippable(videos=TRAIN_VIDEOS, assets: str | Path = "/assets") -> list[str]:
    """The entries of ``videos`` that :func:`shippable.is_shippable` rejects (path and frame range).

    Only paths are compared, so ``assets`` need not exist (the check is the same for any root).
    """
    from edgepose.compression.data.shippable import is_shippable
    from edgepose.compression.data.sources import MediaItem

    root = Path(assets)
    bad = []
    for rel, start, stop in videos:
        if not rel.startswith(_DATA) or not is_shippable(MediaItem(str(root / rel), "video", start, stop),
                                                         root / "data"):
            bad.append(f"{rel} [{start}, {stop})")
    return bad


def check_shippable(videos=TRAIN_VIDEOS) -> None:
    """Raise :class:`ConfigError` if any training video is outside shippable.py's allow-list."""
    bad = unshippable(videos)
    if bad:
        raise ConfigError(f"temporal training videos not allowed for a shipped model "
                          f"(compression/data/shippable.py): {bad}")


check_shippable()


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
