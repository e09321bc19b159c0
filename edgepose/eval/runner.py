"""Run a model over the evaluation sets and score it: one row per set, plus ALL and HARD.

Each person is estimated on its ground-truth crop (:attr:`Person.roi`: square 1.25 x the GT box;
MPII: its centre and scale), so the numbers measure the pose model, not a detector.

Example:
    >>> from edgepose.assets import assets_dir
    >>> from edgepose.models import load_model
    >>> with load_model("movenet-lightning-int8") as model:
    ...     report = evaluate(model, root=assets_dir() / "data")
    >>> print(report.format_table())
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgepose.errors import ConfigError, unknown_name
from edgepose.eval.datasets import HARD, Person, get_spec, load_dataset, resolve_data_root, resolve_names
from edgepose.eval.metrics import BBOX_ALPHA, TORSO_ALPHA, oks_ap, pck_bbox, pck_torso
from edgepose.models._crop import CROP_CONVENTIONS, crop_convention
from edgepose.models.base import PoseModel

log = logging.getLogger(__name__)

#: Pixel convention of the evaluation crops: ``"index"`` (``cv2.warpAffine`` with the ROI matrix,
#: pixel i at coordinate i) is the one behind $EDGEPOSE_ASSETS/ASSETS.md's reference numbers: it reproduces
#: Lightning fp32's 68.6 exactly, where the runtime's ``"centre"`` convention reads 67.7. The
#: 161-person set moves by about 1 PCK with half a pixel of crop shift, so compare only numbers
#: taken with the same convention (every report records it).
PROTOCOL_CROP = "index"

#: Name of the row pooling every evaluated person.
ALL = "ALL"
#: Name of the row pooling the hard slice (exlpose, ochuman, posetrack18).
HARD_ROW = "HARD"


@dataclass
class PersonResult:
    """The model's answer for one person.

    Attributes:
        person: the ground truth.
        keypoints: (17, 2) predicted COCO-17 keypoints in image px.
        scores: (17,) predicted keypoint scores.
        ms: wall time of ``model.estimate`` in ms.
    """

    person: Person
    keypoints: np.ndarray
    scores: np.ndarray
    ms: float


@dataclass
class EvalRow:
    """Scores of one dataset or group. Percentages; ``oks_ap`` None where no COCO-17 set is in it.

    Attributes:
        name: the dataset name, ``ALL`` or ``HARD``.
        n_people: people evaluated.
        pck_torso: PCK@0.2 x torso over the 13 shared joints (pooled), percent.
        pck_bbox: PCK@0.1 x max(box w, h), percent.
        oks_ap: COCO OKS AP over the COCO-17 people in the row, percent.
        n_torso: people with a torso size (the ones PCK@torso counts).
        joints: labelled joints scored by PCK@bbox.
    """

    name: str
    n_people: int
    pck_torso: float
    pck_bbox: float
    oks_ap: float | None
    n_torso: int
    joints: int


@dataclass
class EvalReport:
    """The result of :func:`evaluate`.

    Attributes:
        model: the model card's name.
        rows: one per dataset (report order), then ``ALL``, then ``HARD`` when a hard set ran.
        results: per-person predictions, for re-scoring or inspection.
        data_root: where the data came from.
        seconds: total wall time.
    """

    model: str
    rows: list[EvalRow]
    results: list[PersonResult] = field(repr=False)
    data_root: str = ""
    seconds: float = 0.0
    crop_convention: str = PROTOCOL_CROP

    def row(self, name: str) -> EvalRow:
        """The row named ``name`` (a dataset, ``ALL`` or ``HARD``)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise unknown_name("report row", name, [r.name for r in self.rows])

    def to_dict(self) -> dict:
        """JSON-ready summary (rows, protocol, mean model time); per-person results left out."""
        ms = [r.ms for r in self.results]
        return {
            "model": self.model,
            "data_root": self.data_root,
            "protocol": {
                "joints": "13 shared (nose, shoulders, elbows, wrists, hips, knees, ankles)",
                "crop": "square 1.25 x GT box (MPII: centre, side scale x 200)",
                "crop_convention": self.crop_convention,
                "pck_torso_alpha": TORSO_ALPHA, "pck_bbox_alpha": BBOX_ALPHA,
                "pooling": "hits / labelled joints", "units": "percent",
            },
            "ms_per_person": round(float(np.mean(ms)), 3) if ms else None,
            "seconds": round(self.seconds, 2),
            "rows": [{k: (_round(v) if isinstance(v, float) else v) for k, v in asdict(r).items()}
                     for r in self.rows],
        }

    def format_table(self) -> str:
        """A plain-text table, one line per row."""
        head = f"{'dataset':22s} {'people':>6s} {'PCK@0.2torso':>12s} {'PCK@0.1bbox':>11s} {'OKS-AP':>7s}"
        lines = [f"model: {self.model}", head, "-" * len(head)]
        for r in self.rows:
            if r.name == ALL:
                lines.append("-" * len(head))
            oks = "-" if r.oks_ap is None else f"{r.oks_ap:7.1f}"
            lines.append(f"{r.name:22s} {r.n_people:6d} {_fmt(r.pck_torso):>12s} "
                         f"{_fmt(r.pck_bbox):>11s} {oks:>7s}")
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.1f}"


def _round(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 2)


def score(name: str, results: list[PersonResult]) -> EvalRow:
    """Score a list of per-person results as one row (pooled PCK; OKS-AP on COCO-17 people)."""
    if not results:
        return EvalRow(name, 0, float("nan"), float("nan"), None, 0, 0)
    pred = np.stack([r.keypoints for r in results])
    gt = np.stack([r.person.keypoints for r in results])
    boxes = np.array([r.person.box for r in results])
    torso = pck_torso(pred, gt)
    bbox = pck_bbox(pred, gt, boxes)
    coco = [r for r in results if get_spec(r.person.dataset).coco17]
    ap = None
    if coco:
        image_ids: dict[tuple[str, Path], int] = {}
        ids = [image_ids.setdefault((r.person.dataset, r.person.image_path), len(image_ids) + 1)
               for r in coco]
        ap = oks_ap(np.stack([r.keypoints for r in coco]),
                    np.array([float(np.mean(r.scores)) for r in coco]),
                    np.stack([r.person.keypoints for r in coco]),
                    np.array([r.person.area for r in coco]), np.array(ids))["AP"]
    return EvalRow(name, len(results), torso.value, bbox.value, ap, torso.people, bbox.total)


def _read_rgb(path: Path) -> np.ndarray:
    from edgepose._optional import require

    cv2 = require("cv2", "base", package="opencv-python-headless")
    img = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ConfigError(f"cannot read image {str(path)!r}; check the data root (--data-root / "
                          "EDGEPOSE_DATA) and that the file is a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def predict(model: PoseModel, people: list[Person], *, progress: bool = True,
            desc: str = "", crop: str = PROTOCOL_CROP) -> list[PersonResult]:
    """Run ``model.estimate`` on each person's evaluation crop (each image read once).

    ``crop`` is the pixel convention of the crops (:data:`PROTOCOL_CROP` by default; ``"centre"``
    is the runtime's).
    """
    from tqdm import tqdm

    _check_crop(crop)
    results: list[PersonResult] = []
    cached: tuple[Path | None, np.ndarray | None] = (None, None)
    with crop_convention(crop), tqdm(total=len(people), desc=desc or model.name, unit="person",
                                     disable=not progress, leave=False) as bar:
        for p in people:
            if cached[0] != p.image_path:
                cached = (p.image_path, _read_rgb(p.image_path))
            t0 = time.perf_counter()
            est = model.estimate(cached[1], p.roi)
            ms = (time.perf_counter() - t0) * 1e3
            results.append(PersonResult(p, np.asarray(est.keypoints, dtype=np.float64),
                                        np.asarray(est.scores, dtype=np.float64), ms))
            bar.update(1)
    return results


def _check_crop(crop: str) -> None:
    if crop not in CROP_CONVENTIONS:
        raise ConfigError(f"crop convention {crop!r} is not one of {', '.join(CROP_CONVENTIONS)}; "
                          f"use {PROTOCOL_CROP!r} (the $EDGEPOSE_ASSETS/ASSETS.md protocol) unless you are checking "
                          "the runtime's 'centre' crops")


def evaluate(model: PoseModel, *, datasets: str | list[str] | None = None,
             root: str | os.PathLike | None = None, progress: bool = True,
             crop: str = PROTOCOL_CROP) -> EvalReport:
    """Evaluate ``model`` on GT crops of the evaluation sets.

    Args:
        model: an open model card (e.g. from :func:`edgepose.models.load_model`).
        datasets: dataset or group names (list or comma-separated string; groups ``coco_mini``
            and ``hard``); None = every registered set (the 161 people of $EDGEPOSE_ASSETS/ASSETS.md).
        root: the data root holding coco_mini/ and mmpose_mini/ (default ``$EDGEPOSE_DATA``).
        progress: show a tqdm progress bar on stderr.
        crop: the crops' pixel convention (:data:`PROTOCOL_CROP`, or ``"centre"``: the runtime's).

    Returns:
        An :class:`EvalReport`: a row per set, then ``ALL`` and (when a hard set ran) ``HARD``.
    """
    t0 = time.perf_counter()
    _check_crop(crop)
    names = resolve_names(datasets)
    data_root = resolve_data_root(root)
    people = [p for n in names for p in load_dataset(n, data_root)]
    log.info("evaluating %s on %d people from %d sets", model.name, len(people), len(names))
    results = predict(model, people, progress=progress, crop=crop)
    by_set = {n: [r for r in results if r.person.dataset == n] for n in names}
    rows = [score(n, by_set[n]) for n in names]
    rows.append(score(ALL, results))
    hard = [r for n in names if n in HARD for r in by_set[n]]
    if hard:
        rows.append(score(HARD_ROW, hard))
    return EvalReport(model=model.name, rows=rows, results=results, data_root=str(data_root),
                      seconds=time.perf_counter() - t0, crop_convention=crop)


__all__ = ["evaluate", "predict", "score", "PROTOCOL_CROP", "EvalReport", "EvalRow", "PersonResult", "ALL", "HARD_ROW"]
