"""Augmentation of teacher-labelled crops: geometry (scale / rotate / translate / flip) applied to
the image, the keypoints and the teacher's maps alike, then colour, blur and cutout on the image.

Coordinates follow :mod:`edgepose.models._crop`: continuous pixels, a W-wide image spans [0, W].
Map cells are ``stride`` pixels wide (4 for MoveNet) and cell ``i`` covers [i, i + 1) in map
units, so a pixel affine ``A`` acts on maps as ``S(1/stride) A S(stride)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from edgepose.models._crop import _index_matrix, apply_affine

from ..importer.movenet import FLIP_PAIRS
from edgepose.errors import ConfigError

_FLIP_PERM = np.arange(17)
for _a, _b in FLIP_PAIRS:
    _FLIP_PERM[_a], _FLIP_PERM[_b] = _b, _a


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation ranges (all off with :meth:`none`).

    Attributes:
        scale: zoom range (1 = the person fills the crop as in the evaluation protocol).
        rotate_deg: max absolute rotation (people in the eval sets are mostly upright).
        translate: max shift as a fraction of the crop side.
        flip: probability of a horizontal flip (left/right keypoints swapped).
        colour: max relative brightness / contrast / saturation change.
        blur: probability of a Gaussian blur (motion and focus blur on cheap cameras).
        cutout: probability of one random occluding rectangle (occlusion robustness).
        cutout_size: (min, max) rectangle side as a fraction of the crop side.
    """

    scale: tuple[float, float] = (0.75, 1.25)
    rotate_deg: float = 30.0
    translate: float = 0.1
    flip: float = 0.5
    colour: float = 0.3
    blur: float = 0.2
    cutout: float = 0.3
    cutout_size: tuple[float, float] = (0.1, 0.35)

    def __post_init__(self):
        for f in ("flip", "blur", "cutout"):
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise ConfigError(f"AugmentConfig.{f} is a probability in [0, 1], got {getattr(self, f)!r}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"AugmentConfig.scale must be (min, max) with 0 < min <= max, got {self.scale!r}")

    @staticmethod
    def none() -> "AugmentConfig":
        """No augmentation (validation)."""
        return AugmentConfig(scale=(1.0, 1.0), rotate_deg=0.0, translate=0.0, flip=0.0, colour=0.0,
                             blur=0.0, cutout=0.0)

    def to_dict(self) -> dict:
        return asdict(self)


def random_affine(cfg: AugmentConfig, in_size: int, out_size: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, bool]:
    """A 2x3 pixel affine teacher crop -> student input, and whether it flips."""
    s = rng.uniform(*cfg.scale) * out_size / in_size
    r = math.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    t = rng.uniform(-cfg.translate, cfg.translate, size=2) * out_size
    flip = rng.random() < cfg.flip
    c, si = math.cos(r) * s, math.sin(r) * s
    a = np.array([[c, -si], [si, c]])
    if flip:
        a = np.array([[-1.0, 0.0], [0.0, 1.0]]) @ a
    centre_in = np.full(2, in_size / 2.0)
    centre_out = np.full(2, out_size / 2.0) + t
    return np.hstack([a, (centre_out - a @ centre_in)[:, None]]), flip


def _colour(img: np.ndarray, amount: float, rng) -> np.ndarray:
    x = img.astype(np.float32)
    b = 1.0 + rng.uniform(-amount, amount)
    c = 1.0 + rng.uniform(-amount, amount)
    sat = 1.0 + rng.uniform(-amount, amount)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * sat
    x = (x - x.mean()) * c + x.mean()
    return np.clip(x * b, 0, 255).astype(np.uint8)


def augment(img: np.ndarray, keypoints: np.ndarray, maps: np.ndarray, cfg: AugmentConfig, *,
            out_size: int, stride: int = 4, rng: np.random.Generator | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment one teacher-labelled crop into a student sample.

    Args:
        img: (S, S, 3) uint8 teacher crop.
        keypoints: (17, 3) teacher (y, x, score), normalised to the crop.
        maps: (C, S / stride, S / stride) teacher maps (17 heatmaps + centre), any float/uint8.
        cfg: augmentation ranges.
        out_size: student input side.
        stride: pixels per map cell.
        rng: random generator.

    Returns:
        ``(image (out, out, 3) uint8, keypoints (17, 3) normalised to the output, maps
        (C, out / stride, out / stride) float32)``; keypoints leaving the crop keep their
        coordinates (outside [0, 1]) and score, so losses can mask them.
    """
    import cv2

    rng = rng or np.random.default_rng()
    in_size = img.shape[0]
    a, flip = random_affine(cfg, in_size, out_size, rng)
    out = cv2.warpAffine(img, _index_matrix(a), (out_size, out_size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    xy = apply_affine(a, keypoints[:, [1, 0]] * in_size) / out_size
    kps = np.stack([xy[:, 1], xy[:, 0], keypoints[:, 2]], axis=1).astype(np.float32)
    sm = np.diag([1.0 / stride, 1.0 / stride])
    am = np.hstack([sm @ a[:, :2] * stride, (sm @ a[:, 2])[:, None]])
    ms = out_size // stride
    m = maps.astype(np.float32) / (255.0 if maps.dtype == np.uint8 else 1.0)
    warped = cv2.warpAffine(np.ascontiguousarray(m.transpose(1, 2, 0)), _index_matrix(am), (ms, ms),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    warped = warped.reshape(ms, ms, -1).transpose(2, 0, 1)
    if flip:
        kps = kps[_FLIP_PERM]
        warped = np.concatenate([warped[:17][_FLIP_PERM], warped[17:]], axis=0)
    if cfg.colour > 0:
        out = _colour(out, cfg.colour, rng)
    if rng.random() < cfg.blur:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    if rng.random() < cfg.cutout:
        side = rng.uniform(*cfg.cutout_size, size=2) * out_size
        x0, y0 = rng.uniform(0, out_size - side[0]), rng.uniform(0, out_size - side[1])
        out = out.copy()
        out[int(y0):int(y0 + side[1]), int(x0):int(x0 + side[0])] = rng.integers(0, 256, size=3, dtype=np.uint8)
    return out, kps, np.ascontiguousarray(warped, dtype=np.float32)
