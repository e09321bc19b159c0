"""Regions of interest and affine crops (frame <-> model input), pure numpy plus cv2.warpAffine."""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass

import numpy as np

from edgepose._optional import require
from edgepose.errors import ConfigError


@dataclass(frozen=True)
class Roi:
    """A (possibly rotated) rectangle in frame pixels.

    Attributes:
        cx, cy: centre in frame pixels.
        width, height: side lengths in frame pixels (before rotation).
        rotation: radians, counter-clockwise rotation of the person in the frame; the crop is
            rotated by it so the person appears upright.
    """

    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0

    @staticmethod
    def square(cx: float, cy: float, side: float, rotation: float = 0.0) -> "Roi":
        return Roi(float(cx), float(cy), float(side), float(side), float(rotation))

    @staticmethod
    def from_box(x0: float, y0: float, x1: float, y1: float, scale: float = 1.25) -> "Roi":
        """Square ROI centred on a box, side ``scale`` x the box's longer side (eval protocol)."""
        side = scale * max(x1 - x0, y1 - y0)
        return Roi.square((x0 + x1) / 2.0, (y0 + y1) / 2.0, side)

    @staticmethod
    def full_frame(width: int, height: int) -> "Roi":
        """The whole frame, padded to a square."""
        return Roi.square(width / 2.0, height / 2.0, float(max(width, height)))

    def box(self) -> tuple[float, float, float, float]:
        hw, hh = self.width / 2.0, self.height / 2.0
        return self.cx - hw, self.cy - hh, self.cx + hw, self.cy + hh


def roi_to_crop_matrix(roi: Roi, out_w: int, out_h: int) -> np.ndarray:
    """2x3 affine matrix mapping frame coordinates to crop coordinates of an ``out_w x out_h`` input.

    Continuous convention: a W-pixel-wide image spans [0, W]; pixel i's centre is at i + 0.5.
    Keypoints are in these coordinates, so the ROI's edges land exactly on the crop's edges.
    """
    sx = out_w / roi.width
    sy = out_h / roi.height
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    # frame -> roi-centred, rotated by +rotation (undoing the person's rotation), scaled.
    a = np.array([[c * sx, -s * sx], [s * sy, c * sy]], dtype=np.float64)
    centre = np.array([roi.cx, roi.cy])
    t = np.array([out_w / 2.0, out_h / 2.0]) - a @ centre
    return np.hstack([a, t[:, None]])


def _index_matrix(m: np.ndarray) -> np.ndarray:
    """The continuous-coordinate matrix expressed on pixel indices (what cv2.warpAffine uses)."""
    a = m[:, :2]
    t = m[:, 2] + a @ np.array([0.5, 0.5]) - 0.5
    return np.hstack([a, t[:, None]])


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (closed form: this runs on every frame)."""
    a, b, c, d = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    tx, ty = m[0, 2], m[1, 2]
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]])


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (N, 2) points."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


#: Pixel-coordinate conventions of :func:`crop`. ``"centre"`` (the runtime's): pixel i spans
#: [i, i + 1], so the ROI's edges land on the crop's edges. ``"index"``: pixel i sits at
#: coordinate i, i.e. ``cv2.warpAffine(frame, M)`` with the ROI matrix itself; crops are shifted
#: by half a source pixel minus half a crop pixel. $EDGEPOSE_ASSETS/ASSETS.md's reference numbers were produced
#: with ``"index"`` (it reproduces Lightning fp32's 68.6 exactly; ``"centre"`` reads 67.7), so
#: the evaluation protocol uses it.
CROP_CONVENTIONS = ("centre", "index")
_CONVENTION: contextvars.ContextVar[str] = contextvars.ContextVar("edgepose_crop_convention",
                                                                  default="centre")


@contextlib.contextmanager
def crop_convention(name: str):
    """Use pixel convention ``name`` (one of :data:`CROP_CONVENTIONS`) for crops in this block.

    Example:
        >>> with crop_convention("index"):
        ...     est = model.estimate(frame, roi)
    """
    if name not in CROP_CONVENTIONS:
        raise ConfigError(f"crop convention {name!r} is not one of {', '.join(CROP_CONVENTIONS)}; "
                         "'centre' is the runtime's, 'index' the evaluation protocol's")
    token = _CONVENTION.set(name)
    try:
        yield
    finally:
        _CONVENTION.reset(token)


def crop(frame: np.ndarray, roi: Roi, out_w: int, out_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``roi`` of ``frame`` to ``out_w x out_h`` (bilinear, black border).

    The pixel convention is the one set by :func:`crop_convention` (default ``"centre"``).

    Returns:
        ``(crop, M)``: the crop (same dtype as frame) and the frame->crop 2x3 matrix in
        continuous coordinates (use it with :func:`apply_affine` on keypoints).
    """
    cv2 = require("cv2", "base", package="opencv-python-headless")
    if _CONVENTION.get() == "index":
        m = roi_to_crop_matrix(roi, out_w, out_h)
        out = cv2.warpAffine(frame, m, (out_w, out_h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out, m
    if roi.rotation == 0.0:
        return _crop_axis_aligned(cv2, frame, roi, out_w, out_h)
    m = roi_to_crop_matrix(roi, out_w, out_h)
    out = cv2.warpAffine(frame, _index_matrix(m), (out_w, out_h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, m


def _crop_axis_aligned(cv2, frame, roi: Roi, out_w: int, out_h: int):
    """Unrotated ROI: slice + cv2.resize (about 2x faster than warpAffine per frame).

    The ROI is snapped to whole source pixels; the returned matrix describes the snapped box
    exactly, so keypoints map back without error (the crop differs from the exact ROI by less
    than one source pixel).
    """
    h, w = frame.shape[:2]
    x0 = int(round(roi.cx - roi.width / 2.0))
    y0 = int(round(roi.cy - roi.height / 2.0))
    bw = max(1, int(round(roi.width)))
    bh = max(1, int(round(roi.height)))
    x1, y1 = x0 + bw, y0 + bh
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        src = frame[y0:y1, x0:x1]
    else:
        src = np.zeros((bh, bw) + frame.shape[2:], frame.dtype)
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if ix1 > ix0 and iy1 > iy0:
            src[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = frame[iy0:iy1, ix0:ix1]
    out = cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    sx, sy = out_w / bw, out_h / bh
    m = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]])
    return out, m
