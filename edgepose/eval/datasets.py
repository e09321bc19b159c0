"""Evaluation datasets: coco_mini and the mmpose_mini test sets, mapped to COCO-17.

Every set yields :class:`Person` records: the image, the ground-truth keypoints mapped to
COCO-17 through :data:`edgepose.types.FORMAT_TO_COCO17` (``v = 0`` where the format has no such
joint), the person box and the evaluation crop. The protocol ($EDGEPOSE_ASSETS/ASSETS.md): crowd annotations are
skipped, and a person counts when at least :data:`MIN_LABELLED` of the 13
:data:`~edgepose.types.SHARED13` joints are labelled (``v > 0``).

The data root is the folder holding ``coco_mini/`` and ``mmpose_mini/`` (the shared assets'
``data`` folder). Pass it explicitly or set the environment variable ``EDGEPOSE_DATA``.

Example:
    >>> people = load_dataset("ochuman", "/path/to/assets/data")
    >>> len(people), people[0].keypoints.shape
    (5, (17, 3))
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgepose.errors import ConfigError, unknown_name
from edgepose.models._crop import Roi
from edgepose.types import FORMAT_TO_COCO17, SHARED13

log = logging.getLogger(__name__)

#: Environment variable naming the evaluation data root (the folder with coco_mini/, mmpose_mini/).
DATA_ENV = "EDGEPOSE_DATA"
#: A person is evaluated when at least this many of the 13 shared joints are labelled ($EDGEPOSE_ASSETS/ASSETS.md).
MIN_LABELLED = 6
#: Crop side / longer box side of the evaluation crop ($EDGEPOSE_ASSETS/ASSETS.md: square 1.25 x the GT box).
CROP_SCALE = 1.25
#: MPII's ``scale`` is the person height in units of 200 px (the MPII convention).
MPII_SCALE_PX = 200.0

_ = -1
#: PoseTrack18's 17 keypoints are COCO-17 except 1-2, which are head_bottom / head_top, not eyes;
#: they are dropped so OKS does not compare them with predicted eyes.
_POSETRACK17 = (0, _, _, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
del _


@dataclass(frozen=True)
class Person:
    """One labelled person.

    Attributes:
        dataset: the registered dataset name.
        image_path: the image file.
        keypoints: (17, 3) float64 COCO-17 x, y (image px) and v (0 = not labelled).
        box: (x0, y0, x1, y1) person box in image px (COCO bbox; MPII: the visible joints' extent).
        roi: the evaluation crop (square 1.25 x the box; MPII: the given centre, side scale x 200).
        area: the person's area in px^2 for OKS (the annotation's, else the box's).
        annotation_id: the source annotation id (or the index in the source list).
    """

    dataset: str
    image_path: Path
    keypoints: np.ndarray
    box: tuple[float, float, float, float]
    roi: Roi
    area: float
    annotation_id: int

    @property
    def num_labelled(self) -> int:
        """How many of the 13 shared joints are labelled."""
        return int((self.keypoints[list(SHARED13), 2] > 0).sum())


@dataclass(frozen=True)
class DatasetSpec:
    """A registered evaluation set.

    Attributes:
        name: the name users pick it by.
        description: one line for listings.
        coco17: whether the ground truth has COCO-17 face keypoints (OKS-AP is computed on it).
        hard: part of the hard slice (low light, occlusion, fast motion).
        loader: (data root, name) -> list of :class:`Person`.
    """

    name: str
    description: str
    coco17: bool
    hard: bool
    loader: Callable[[Path, str], list[Person]]


def map_keypoints(raw: np.ndarray, fmt: str | tuple[int, ...]) -> np.ndarray:
    """Map (N, 3) keypoints of format ``fmt`` to (17, 3) COCO-17; absent joints get v = 0.

    Args:
        raw: (N, 3) x, y, v in the dataset's own joint order.
        fmt: a key of :data:`~edgepose.types.FORMAT_TO_COCO17` or an explicit table.
    """
    table = np.asarray(FORMAT_TO_COCO17[fmt] if isinstance(fmt, str) else fmt)
    raw = np.asarray(raw, dtype=np.float64).reshape(-1, 3)
    out = np.zeros((17, 3), dtype=np.float64)
    out[table >= 0] = raw[table[table >= 0]]
    out[out[:, 2] <= 0] = 0.0  # unlabelled: no position either
    return out


def _keep(kps: np.ndarray) -> bool:
    return int((kps[list(SHARED13), 2] > 0).sum()) >= MIN_LABELLED


def _read_json(path: Path):
    if not path.is_file():
        raise ConfigError(
            f"annotation file {str(path)!r} not found. The data root must be the folder holding "
            f"coco_mini/ and mmpose_mini/ (the shared assets' data folder): pass --data-root DIR "
            f"(data_root=...) or set {DATA_ENV}"
        )
    with open(path) as fh:
        return json.load(fh)


def _coco_people(name: str, ann_file: Path, fmt: str | tuple[int, ...],
                 image_path: Callable[[str], Path]) -> list[Person]:
    """People of a COCO-style keypoint json (bbox [x, y, w, h], keypoints flat x, y, v)."""
    data = _read_json(ann_file)
    images = {img["id"]: img for img in data["images"]}
    people = []
    for ann in data["annotations"]:
        if ann.get("iscrowd") or ann["image_id"] not in images:
            continue
        kps = map_keypoints(ann["keypoints"], fmt)
        if not _keep(kps):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        box = (x, y, x + w, y + h)
        people.append(Person(
            dataset=name, image_path=image_path(images[ann["image_id"]]["file_name"]),
            keypoints=kps, box=box, roi=Roi.from_box(*box, scale=CROP_SCALE),
            area=float(ann.get("area") or w * h), annotation_id=int(ann["id"]),
        ))
    return people


def _coco_mini(split: str):
    def load(root: Path, name: str) -> list[Person]:
        base = root / "coco_mini"
        return _coco_people(name, base / "annotations" / f"person_keypoints_{split}.json", "coco17",
                            lambda f: base / split / f)
    return load


def _mmpose(folder: str, ann: str, fmt: str | tuple[int, ...],
            image_path: Callable[[Path, str], Path] | None = None):
    def load(root: Path, name: str) -> list[Person]:
        base = root / "mmpose_mini" / folder
        resolve = image_path or (lambda b, f: b / f)
        return _coco_people(name, base / ann, fmt, lambda f: resolve(base, f))
    return load


def _h36m_image(base: Path, file_name: str) -> Path:
    # S1_Directions_1.54138969_000001.jpg lives in S1/S1_Directions_1.54138969/.
    seq = file_name.rsplit("_", 1)[0]
    return base / seq.split("_", 1)[0] / seq / file_name


def _mpii(root: Path, name: str) -> list[Person]:
    """MPII (mmpose json list): crop = the given centre, side scale x 200; box = visible joints."""
    base = root / "mmpose_mini" / "mpii"
    people = []
    for i, ann in enumerate(_read_json(base / "test_mpii.json")):
        joints = np.asarray(ann["joints"], dtype=np.float64)
        vis = np.asarray(ann["joints_vis"], dtype=np.float64)
        kps = map_keypoints(np.column_stack([joints, vis]), "mpii16")
        if not _keep(kps):
            continue
        labelled = joints[vis > 0]
        x0, y0 = labelled.min(axis=0)
        x1, y1 = labelled.max(axis=0)
        w, h = x1 - x0, y1 - y0
        cx, cy = ann["center"]
        people.append(Person(
            dataset=name, image_path=base / ann["image"], keypoints=kps,
            box=(float(x0), float(y0), float(x1), float(y1)),
            roi=Roi.square(cx, cy, float(ann["scale"]) * MPII_SCALE_PX),
            area=float(w * h), annotation_id=i,
        ))
    return people


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> None:
    """Add an evaluation set to the registry."""
    _REGISTRY[spec.name] = spec


for _spec in (
    DatasetSpec("coco_mini_val2017", "coco_mini val2017 (79 real COCO images)", True, False,
                _coco_mini("val2017")),
    DatasetSpec("coco_mini_train2017", "coco_mini train2017 (80 real COCO images)", True, False,
                _coco_mini("train2017")),
    DatasetSpec("coco", "mmpose_mini coco (4 images)", True, False,
                _mmpose("coco", "test_coco.json", "coco17")),
    DatasetSpec("ochuman", "mmpose_mini OCHuman (heavy occlusion)", True, True,
                _mmpose("ochuman", "test_ochuman.json", "coco17")),
    DatasetSpec("crowdpose", "mmpose_mini CrowdPose (crowds, 14 joints)", False, False,
                _mmpose("crowdpose", "test_crowdpose.json", "crowdpose14")),
    DatasetSpec("exlpose", "mmpose_mini ExLPose (low light, CrowdPose joints)", False, True,
                _mmpose("exlpose", "test_exlpose.json", "crowdpose14")),
    DatasetSpec("aic", "mmpose_mini AI Challenger (14 joints)", False, False,
                _mmpose("aic", "test_aic.json", "aic14")),
    DatasetSpec("mhp", "mmpose_mini MHP (MPII joints)", False, False,
                _mmpose("mhp", "test_mhp.json", "mpii16")),
    DatasetSpec("mpii", "mmpose_mini MPII (centre/scale crops)", False, False, _mpii),
    DatasetSpec("posetrack18", "mmpose_mini PoseTrack18 (fast motion; head_bottom/top dropped)",
                True, True,
                _mmpose("posetrack18", "annotations/test_posetrack18_val.json", _POSETRACK17)),
    DatasetSpec("jhmdb", "mmpose_mini Sub-JHMDB (15 joints)", False, False,
                _mmpose("jhmdb", "test_jhmdb_sub1.json", "jhmdb15")),
    DatasetSpec("h36m", "mmpose_mini Human3.6M (standard order: 1-3 right leg)", False, False,
                _mmpose("h36m", "h36m_coco.json", "h36m17", _h36m_image)),
):
    register(_spec)
del _spec

#: Names of the hard slice ($EDGEPOSE_ASSETS/ASSETS.md: low light, occlusion, fast motion).
HARD = tuple(s.name for s in _REGISTRY.values() if s.hard)
#: Group names accepted wherever a list of datasets is: each expands to its members.
GROUPS: dict[str, tuple[str, ...]] = {
    "coco_mini": ("coco_mini_val2017", "coco_mini_train2017"),
    "hard": HARD,
}


def list_datasets() -> list[str]:
    """Names of the registered evaluation sets, in report order."""
    return list(_REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered as ``name``."""
    if name not in _REGISTRY:
        raise unknown_name("dataset", name, list(_REGISTRY) + list(GROUPS),
                           "Run 'edgepose eval --help' or call list_datasets()")
    return _REGISTRY[name]


def resolve_names(names: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Expand a list (or comma-separated string) of dataset / group names, in report order.

    None means every registered set.
    """
    if names is None:
        return list_datasets()
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for n in names:
        for m in GROUPS.get(n, (n,)):
            get_spec(m)
            if m not in out:
                out.append(m)
    if not out:
        raise ConfigError(f"no dataset named in {names!r}; valid choices: "
                          f"{', '.join(list_datasets() + list(GROUPS))}")
    order = list_datasets()
    return sorted(out, key=order.index)


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The evaluation data root: ``root`` if given, else ``$EDGEPOSE_DATA``; checked to exist.

    Raises:
        ConfigError: neither is set, or the folder lacks coco_mini/ and mmpose_mini/.
    """
    source = "data_root"
    if root is None:
        env = os.environ.get(DATA_ENV)
        if not env:
            raise ConfigError(
                "no evaluation data root given: pass --data-root DIR (data_root=...) or set "
                f"{DATA_ENV} to the folder holding coco_mini/ and mmpose_mini/ (in this project: "
                "$EDGEPOSE_ASSETS/data)"
            )
        root, source = env, DATA_ENV
    path = Path(root).expanduser()
    missing = [d for d in ("coco_mini", "mmpose_mini") if not (path / d).is_dir()]
    if missing:
        raise ConfigError(
            f"{source} {str(path)!r} has no {' or '.join(m + '/' for m in missing)} folder; point "
            f"--data-root (or {DATA_ENV}) at the folder holding coco_mini/ and mmpose_mini/"
        )
    log.info("evaluation data root: %s (from %s)", path, source)
    return path


def load_dataset(name: str, root: str | os.PathLike | None = None) -> list[Person]:
    """The evaluated people of one registered set.

    Args:
        name: a name from :func:`list_datasets`.
        root: the data root (default ``$EDGEPOSE_DATA``); see :func:`resolve_data_root`.
    """
    spec = get_spec(name)
    people = spec.loader(resolve_data_root(root), name)
    log.info("dataset %s: %d people", name, len(people))
    return people


__all__ = ["Person", "DatasetSpec", "DATA_ENV", "MIN_LABELLED", "CROP_SCALE", "HARD", "GROUPS",
           "list_datasets", "get_spec", "resolve_names", "resolve_data_root", "load_dataset",
           "map_keypoints", "register"]
