"""Pose accuracy metrics: PCK (torso / bbox normalised) on the 13 shared joints, OKS and OKS-AP.

PCK is pure numpy. Scores are pooled: hits over labelled joints across all people, not a mean
of per-person ratios ($EDGEPOSE_ASSETS/ASSETS.md protocol). OKS-AP runs pycocotools' ``COCOeval`` on ground truth
and detections built in memory (the ``eval`` extra).

Shapes: ``pred`` (N, 17, 2) COCO-17 x, y; ``gt`` (N, 17, 3) x, y, v with v > 0 = labelled.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

from edgepose.types import COCO_SIGMAS, SHARED13, Keypoint
from edgepose.errors import ConfigError

#: PCK@0.2 x torso: a joint is correct when its error is below this fraction of the torso size.
TORSO_ALPHA = 0.2
#: PCK@0.1 x bbox: ... below this fraction of the box's longer side.
BBOX_ALPHA = 0.1

_LS, _RS = int(Keypoint.LEFT_SHOULDER), int(Keypoint.RIGHT_SHOULDER)
_LH, _RH = int(Keypoint.LEFT_HIP), int(Keypoint.RIGHT_HIP)


@dataclass(frozen=True)
class Pck:
    """A pooled PCK count.

    Attributes:
        hits: correct joints.
        total: labelled joints that were scored.
        people: people that contributed (those with a defined normaliser).
    """

    hits: int
    total: int
    people: int

    @property
    def value(self) -> float:
        """hits / total as a percentage (nan when nothing was scored)."""
        return 100.0 * self.hits / self.total if self.total else float("nan")

    def __add__(self, other: "Pck") -> "Pck":
        return Pck(self.hits + other.hits, self.total + other.total, self.people + other.people)


def torso_size(gt: np.ndarray) -> np.ndarray:
    """Torso size per person: the mean of the available |l_sho - r_hip| and |r_sho - l_hip|.

    Args:
        gt: (17, 3) or (N, 17, 3) ground truth.

    Returns:
        (N,) sizes (a 0-d array for one person); nan where neither diagonal is labelled.
    """
    gt = np.asarray(gt, dtype=np.float64)
    one = gt.ndim == 2
    gt = gt[None] if one else gt
    sizes = []
    for a, b in ((_LS, _RH), (_RS, _LH)):
        ok = (gt[:, a, 2] > 0) & (gt[:, b, 2] > 0)
        d = np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=-1)
        sizes.append(np.where(ok, d, np.nan))
    stacked = np.stack(sizes, axis=1)
    with _warnings_off():
        out = np.nanmean(stacked, axis=1)
    return out[0] if one else out


def bbox_size(boxes: np.ndarray) -> np.ndarray:
    """max(w, h) of (N, 4) boxes (x0, y0, x1, y1)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def pck(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, alpha: float, *,
        joints: tuple[int, ...] = SHARED13) -> Pck:
    """Pooled PCK: joints with error < ``alpha`` x ``norm`` over labelled ``joints``.

    Args:
        pred: (N, 17, 2) predicted keypoints.
        gt: (N, 17, 3) ground truth.
        norm: (N,) per-person normaliser; people with a nan or non-positive one are left out.
        alpha: the threshold as a fraction of ``norm``.
        joints: COCO-17 indices scored (default: the 13 shared joints).
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 17, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 17, 3)
    norm = np.asarray(norm, dtype=np.float64).reshape(-1)
    if not (len(pred) == len(gt) == len(norm)):
        raise ConfigError(f"pck: pred ({len(pred)}), gt ({len(gt)}) and norm ({len(norm)}) must "
                         "have one entry per person")
    j = list(joints)
    valid = np.isfinite(norm) & (norm > 0)
    labelled = (gt[:, j, 2] > 0) & valid[:, None]
    err = np.linalg.norm(pred[:, j] - gt[:, j, :2], axis=-1)
    thr = alpha * np.where(valid, norm, 0.0)
    hits = labelled & (err < thr[:, None])
    return Pck(int(hits.sum()), int(labelled.sum()), int(valid.sum()))


def pck_torso(pred: np.ndarray, gt: np.ndarray, alpha: float = TORSO_ALPHA) -> Pck:
    """PCK@``alpha`` x torso over the 13 shared joints (people without a torso left out)."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 17, 3)
    return pck(pred, gt, torso_size(gt), alpha)


def pck_bbox(pred: np.ndarray, gt: np.ndarray, boxes: np.ndarray, alpha: float = BBOX_ALPHA) -> Pck:
    """PCK@``alpha`` x max(box w, h) over the 13 shared joints."""
    return pck(pred, gt, bbox_size(boxes), alpha)


def oks(pred: np.ndarray, gt: np.ndarray, area: float, sigmas: np.ndarray = COCO_SIGMAS) -> float:
    """Object keypoint similarity of one prediction (17, 2) with one ground truth (17, 3).

    The COCO definition: mean over labelled joints of exp(-d^2 / (2 area (2 sigma)^2)).
    nan when no joint is labelled.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(17, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(17, 3)
    vis = gt[:, 2] > 0
    if not vis.any():
        return float("nan")
    d2 = ((pred - gt[:, :2]) ** 2).sum(axis=1)
    var = (2.0 * np.asarray(sigmas)) ** 2
    e = d2 / var / (area + np.spacing(1)) / 2.0
    return float(np.exp(-e[vis]).mean())


def oks_ap(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, areas: np.ndarray,
           image_ids: np.ndarray) -> dict[str, float]:
    """COCO keypoint AP (OKS) with pycocotools, one detection per ground-truth person.

    Args:
        pred: (N, 17, 2) predicted keypoints, one per ground-truth person.
        scores: (N,) detection scores (e.g. mean keypoint score), used to rank detections.
        gt: (N, 17, 3) COCO-17 ground truth.
        areas: (N,) person areas in px^2 (the OKS scale).
        image_ids: (N,) integer image ids; people of one image must share one id.

    Returns:
        ``{"AP", "AP50", "AP75", "APm", "APl", "AR"}`` in percent (-100 where COCOeval has
        nothing to score, as COCOeval itself reports).
    """
    from edgepose._optional import require

    coco_mod = require("pycocotools.coco", "eval", package="pycocotools")
    cocoeval_mod = require("pycocotools.cocoeval", "eval", package="pycocotools")
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 17, 2)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 17, 3)
    keys = ["AP", "AP50", "AP75", "APm", "APl", "AR"]
    if len(gt) == 0:
        return {k: float("nan") for k in keys}
    gts, dts = [], []
    for i in range(len(gt)):
        vis = gt[i, :, 2] > 0
        xy = gt[i, vis, :2]
        x0, y0 = xy.min(axis=0)
        x1, y1 = xy.max(axis=0)
        gts.append({
            "id": i + 1, "image_id": int(image_ids[i]), "category_id": 1, "iscrowd": 0,
            "area": float(areas[i]), "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "num_keypoints": int(vis.sum()),
            "keypoints": np.column_stack([gt[i, :, :2], (gt[i, :, 2] > 0) * 2]).ravel().tolist(),
        })
        dts.append({
            "image_id": int(image_ids[i]), "category_id": 1, "score": float(scores[i]),
            "keypoints": np.column_stack([pred[i], np.ones(17)]).ravel().tolist(),
        })
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        coco_gt = coco_mod.COCO()
        coco_gt.dataset = {
            "images": [{"id": int(i)} for i in sorted(set(int(v) for v in image_ids))],
            "annotations": gts,
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dts)
        ev = cocoeval_mod.COCOeval(coco_gt, coco_dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats  # AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl
    return {k: float(100.0 * s[i]) if s[i] >= 0 else -100.0 for k, i in
            zip(keys, (0, 1, 2, 3, 4, 5))}


@contextlib.contextmanager
def _warnings_off():
    """Silence numpy's 'mean of empty slice' RuntimeWarning inside nanmean."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


__all__ = ["Pck", "TORSO_ALPHA", "BBOX_ALPHA", "torso_size", "bbox_size", "pck", "pck_torso",
           "pck_bbox", "oks", "oks_ap"]
