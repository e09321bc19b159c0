"""Where training frames come from: any folder of images / videos, and the shared training pool.

:func:`scan_media` lists the images and videos under the paths a user points at;
:func:`training_sources` lists the licence-clean training material of ``$EDGEPOSE_ASSETS``
($EDGEPOSE_ASSETS/ASSETS.md "Rules of use"), with the frame ranges that may be used. Paths inside the evaluation
set (``coco_mini``, the annotated ``mmpose_mini`` sets) are refused: training or calibrating on
them would make every accuracy number afterwards meaningless.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from edgepose.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
#: Evaluation-set folders (relative to the assets ``data`` folder) that must never be trained on.
EVAL_DIRS = ("coco_mini", "mmpose_mini")
#: ... except these sub-folders of them, which $EDGEPOSE_ASSETS/ASSETS.md lists as training material.
EVAL_DIR_EXCEPTIONS = ("mmpose_mini/demo_resources",)


@dataclass(frozen=True)
class MediaItem:
    """One image or video, with the frame range that may be used.

    Attributes:
        path: the file.
        kind: ``"image"`` or ``"video"``.
        start, stop: frame range [start, stop) for videos (stop None = to the end).
        crop: the image is already one person's crop (the training pool): labelled whole, never
            run through the person detector.
    """

    path: str
    kind: str
    start: int = 0
    stop: int | None = None
    crop: bool = False


def _is_eval_path(path: Path) -> bool:
    parts = path.resolve().as_posix()
    for exc in EVAL_DIR_EXCEPTIONS:
        if f"/{exc}/" in parts + "/":
            return False
    return any(f"/data/{d}/" in parts + "/" for d in EVAL_DIRS)


def scan_media(paths, *, allow_eval: bool = False) -> list[MediaItem]:
    """List images and videos in ``paths`` (files or folders, searched recursively, sorted).

    Args:
        paths: a path or a list of paths.
        allow_eval: permit the shared evaluation folders (only for evaluation code, never training).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a path is inside the evaluation set, or nothing usable was found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    items: list[MediaItem] = []
    for p in map(Path, paths):
        if not p.exists():
            raise MissingFileError(f"training data path not found: {str(p)!r}; pass a folder of images/videos")
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            ext = f.suffix.lower()
            if ext not in IMAGE_EXTS + VIDEO_EXTS:
                continue
            if not allow_eval and _is_eval_path(f):
                raise ConfigError(
                    f"{str(f)!r} is in the evaluation set ({', '.join(EVAL_DIRS)}); never train or "
                    "calibrate on it. Point --data at training material (see $EDGEPOSE_ASSETS/ASSETS.md: "
                    "data/train_extra, vtest.avi frames 0-599, body3d_demo.mp4 frames 0-298)")
            items.append(MediaItem(str(f), "image" if ext in IMAGE_EXTS else "video"))
    if not items:
        raise ConfigError(f"no images ({', '.join(IMAGE_EXTS)}) or videos ({', '.join(VIDEO_EXTS)}) "
                         f"found under {[str(p) for p in paths]}")
    return items


def training_sources(data_root: str | os.PathLike) -> list[MediaItem]:
    """The shippable training material of the shared assets (``data_root`` = ``$EDGEPOSE_ASSETS/data``).

    Only material a shipped model may be trained on: the training frame ranges of body3d_demo.mp4
    and vtest.avi, demo.mp4 and data/train_extra. The research-only posetrack18 frames are left
    out (pass them explicitly through :func:`scan_media` for a research model).
    """
    root = Path(data_root)
    items = [MediaItem(str(root / "mmpose_mini/demo_resources/body3d_demo.mp4"), "video", 0, 299),
             MediaItem(str(root / "opencv_doc/vtest.avi"), "video", 0, 600),
             MediaItem(str(root / "mmpose_mini/demo_resources/demo.mp4"), "video")]
    items = [i for i in items if os.path.isfile(i.path)]
    extra = root / "train_extra"
    if extra.is_dir():
        items.extend(scan_media(extra))
    if not items:
        raise MissingFileError(f"no training material found under {str(root)!r}; set the assets "
                                "data folder ($EDGEPOSE_ASSETS/data) or pass --data DIR")
    return items


#: The person-crop pool (relative to the assets ``data`` folder): ``crops/<source>/*.jpg`` + manifest.csv.
POOL_DIR = "train_pool"


def pool_rows(data_root: str | os.PathLike) -> list[dict]:
    """The rows of ``train_pool/manifest.csv`` (``file``, ``source``, ``coco_id``, ...), file order."""
    import csv

    man = Path(data_root) / POOL_DIR / "manifest.csv"
    if not man.is_file():
        raise MissingFileError(f"no training pool manifest at {str(man)!r}; pass the assets data folder "
                               "($EDGEPOSE_ASSETS/data) that holds train_pool/")
    with open(man, newline="") as fh:
        return list(csv.DictReader(fh))


def pool_folder(row: dict) -> str:
    """The pool source folder of a manifest row (``crops/<folder>/<name>.jpg``)."""
    return row["file"].split("/")[1]


def pool_sources(data_root: str | os.PathLike, keep=None) -> list[MediaItem]:
    """The person crops of ``train_pool`` as :class:`MediaItem` s with ``crop=True`` (labelled whole).

    Args:
        data_root: the assets ``data`` folder.
        keep: optional predicate on a manifest row (e.g. the licence rule of
            :func:`~.shippable.pool_row_shippable`); None = every crop (research use only: three
            sources are research-only / unclear, see the pool's README.md).
    """
    root = Path(data_root) / POOL_DIR
    items = [MediaItem(str(root / r["file"]), "image", crop=True) for r in pool_rows(data_root)
             if keep is None or keep(r)]
    missing = [i.path for i in items[:50] if not os.path.isfile(i.path)]
    if missing:
        raise MissingFileError(f"training pool crop(s) missing, e.g. {missing[0]!r}: the pool is incomplete")
    return items


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB uint8."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ConfigError(f"cannot decode image {path!r}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def iter_frames(item: MediaItem, *, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, rgb)`` of an item (every ``stride``-th frame of a video's range)."""
    if item.kind == "image":
        yield 0, read_image(item.path)
        return
    import cv2

    cap = cv2.VideoCapture(item.path)
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {item.path!r}")
    try:
        idx = 0
        while True:
            ok = cap.grab()
            if not ok or (item.stop is not None and idx >= item.stop):
                break
            if idx >= item.start and (idx - item.start) % stride == 0:
                ok, frame = cap.retrieve()
                if ok:
                    yield idx, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            idx += 1
    finally:
        cap.release()
