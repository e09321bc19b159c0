"""The card of edgepose's own students: heatmap, SimCC and RLE-regression heads.

Everything the runtime needs is read from the model file's metadata (written by
``edgepose.compression`` at export; ONNX ``metadata_props`` / a zip appended to ``.tflite``):

==========================  ========================================================================
key                          meaning
==========================  ========================================================================
``edgepose.card``            ``"student"``
``edgepose.head``            ``heatmap`` | ``simcc`` | ``rle``
``edgepose.keypoint_format`` e.g. ``coco17`` (mapped to COCO-17 through :data:`FORMAT_TO_COCO17`)
``edgepose.input_layout``    ``NCHW`` or ``NHWC``
``edgepose.mean``, ``.std``  JSON lists of 3 floats in 0-255 units: ``x = (rgb - mean) / std``
``edgepose.outputs``         JSON object role -> tensor name: heatmap: ``heatmaps``; simcc:
                             ``simcc_x``, ``simcc_y``; rle: ``coords`` (+ optional ``sigma``)
``edgepose.simcc_split``     SimCC bins per input pixel (float, default 2.0)
==========================  ========================================================================
A missing or invalid key is an error naming the key and the valid values; nothing is guessed.
"""

from __future__ import annotations

import json

import numpy as np

from edgepose.backends.base import Backend
from edgepose.errors import ModelLoadError
from edgepose.models._crop import Roi, apply_affine, crop, invert_affine
from edgepose.models.base import Estimate, PoseModel, StageTimer
from edgepose.types import FORMAT_TO_COCO17, NUM_KEYPOINTS, to_coco17

HEADS = ("heatmap", "simcc", "rle")
_ROLES = {"heatmap": ("heatmaps",), "simcc": ("simcc_x", "simcc_y"), "rle": ("coords",)}


# -- pure-numpy decoders (crop coordinates, continuous convention) ----------------------------------
def decode_heatmaps(hm: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) heatmaps -> (K, 2) crop coords and (K,) scores.

    Argmax with a quarter-pixel shift towards the higher neighbour (the classic sub-pixel step),
    then scaled from heatmap cells to input pixels (cell centres at (i + 0.5) * stride).
    """
    hm = np.asarray(hm, dtype=np.float32)
    k, h, w = hm.shape
    flat = hm.reshape(k, -1)
    idx = flat.argmax(axis=1)
    scores = flat[np.arange(k), idx]
    ys, xs = np.divmod(idx, w)
    fx, fy = xs.astype(np.float32), ys.astype(np.float32)
    for j in range(k):
        x, y = xs[j], ys[j]
        if 0 < x < w - 1:
            fx[j] += 0.25 * np.sign(hm[j, y, x + 1] - hm[j, y, x - 1])
        if 0 < y < h - 1:
            fy[j] += 0.25 * np.sign(hm[j, y + 1, x] - hm[j, y - 1, x])
    in_w, in_h = input_size
    coords = np.stack([(fx + 0.5) * in_w / w, (fy + 0.5) * in_h / h], axis=1)
    return coords.astype(np.float32), np.clip(scores, 0.0, 1.0)


def decode_simcc(sx: np.ndarray, sy: np.ndarray, split: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """SimCC (K, Wx) and (K, Hy) 1-D classifications -> (K, 2) crop coords, (K,) scores.

    Bin i covers input position ``i / split`` (so its centre is ``(i + 0.5) / split``); the
    score is the smaller of the two peak probabilities after a softmax over bins.
    """
    def peak(logits):
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        i = p.argmax(axis=1)
        return (i + 0.5) / split, p[np.arange(len(i)), i]

    x, px = peak(np.asarray(sx, dtype=np.float64))
    y, py = peak(np.asarray(sy, dtype=np.float64))
    return np.stack([x, y], axis=1).astype(np.float32), np.minimum(px, py).astype(np.float32)


def decode_rle(coords: np.ndarray, sigma: np.ndarray | None, input_size: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """RLE regression: (K, 2) coords normalised to [0, 1] of the crop and (K, 2) sigma (same units).

    Returns crop coords, scores ``1 - mean(sigma)`` clipped to [0, 1] (RLE's confidence), and the
    per-keypoint sigma in crop pixels (mean of x and y), or None without a sigma output.
    """
    in_w, in_h = input_size
    c = np.asarray(coords, dtype=np.float32).reshape(-1, 2) * np.array([in_w, in_h], np.float32)
    if sigma is None:
        return c, np.ones(len(c), np.float32), None
    s = np.asarray(sigma, dtype=np.float32).reshape(-1, 2)
    score = np.clip(1.0 - s.mean(axis=1), 0.0, 1.0)
    return c, score, (s * np.array([in_w, in_h], np.float32)).mean(axis=1)


# -- the card -----------------------------------------------------------------------------------
def _meta(meta: dict, key: str, path: str, valid: str):
    full = f"edgepose.{key}"
    if full not in meta:
        raise ModelLoadError(f"{path!r} lacks metadata key {full!r} ({valid}); re-export it with edgepose.compression")
    return meta[full]


class StudentModel(PoseModel):
    """Runs a student exported by edgepose.compression, configured from its metadata."""

    def __init__(self, backend: Backend, *, name: str = "student"):
        super().__init__(backend)
        meta, path = backend.metadata, backend.model_path
        self.name = name
        self.head = _meta(meta, "head", path, f"one of {', '.join(HEADS)}")
        if self.head not in HEADS:
            raise ModelLoadError(f"{path!r}: edgepose.head {self.head!r} is not one of {', '.join(HEADS)}")
        self.keypoint_format = _meta(meta, "keypoint_format", path, "e.g. coco17")
        if self.keypoint_format not in FORMAT_TO_COCO17:
            raise ModelLoadError(f"{path!r}: edgepose.keypoint_format {self.keypoint_format!r} is not one of "
                                 f"{', '.join(sorted(FORMAT_TO_COCO17))}")
        self.layout = _meta(meta, "input_layout", path, "NCHW or NHWC")
        if self.layout not in ("NCHW", "NHWC"):
            raise ModelLoadError(f"{path!r}: edgepose.input_layout {self.layout!r} is not NCHW or NHWC")
        try:
            self.mean = np.asarray(json.loads(_meta(meta, "mean", path, "3 floats, 0-255 units")), np.float32)
            self.std = np.asarray(json.loads(_meta(meta, "std", path, "3 floats, 0-255 units")), np.float32)
            self.roles = json.loads(_meta(meta, "outputs", path, "role -> tensor name"))
        except (ValueError, TypeError) as exc:
            raise ModelLoadError(f"{path!r}: edgepose.mean/std/outputs must be JSON ({exc})") from exc
        missing = [r for r in _ROLES[self.head] if r not in self.roles]
        if missing:
            raise ModelLoadError(f"{path!r}: edgepose.outputs lacks role {missing[0]!r} needed by the "
                                 f"{self.head} head (needs {', '.join(_ROLES[self.head])})")
        self.simcc_split = float(meta.get("edgepose.simcc_split", 2.0))
        spec = backend.inputs[0]
        self._in = spec
        h, w = (spec.shape[2], spec.shape[3]) if self.layout == "NCHW" else (spec.shape[1], spec.shape[2])
        self.input_size = (int(w), int(h))
        self._scale = (1.0 / self.std).astype(np.float32)

    def preprocess(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.input_size
        img, m = crop(frame, roi, w, h)
        x = (img.astype(np.float32) - self.mean) * self._scale
        x = x.transpose(2, 0, 1)[None] if self.layout == "NCHW" else x[None]
        return np.ascontiguousarray(x, dtype=self._in.dtype), m

    def decode(self, out: dict[str, np.ndarray]):
        r = self.roles
        sigma = None
        if self.head == "heatmap":
            coords, scores = decode_heatmaps(out[r["heatmaps"]][0], self.input_size)
        elif self.head == "simcc":
            coords, scores = decode_simcc(out[r["simcc_x"]][0], out[r["simcc_y"]][0], self.simcc_split)
        else:
            coords, scores, sigma = decode_rle(out[r["coords"]][0],
                                               out[r["sigma"]][0] if "sigma" in r else None, self.input_size)
        return coords, scores, sigma

    def estimate(self, frame: np.ndarray, roi: Roi) -> Estimate:
        t = StageTimer()
        with t("preprocess"):
            x, m = self.preprocess(frame, roi)
        with t("infer"):
            out = self.backend.run({self._in.name: x})
        with t("decode"):
            coords, scores, sigma = self.decode(out)
            if len(coords) != len(FORMAT_TO_COCO17[self.keypoint_format]) and self.keypoint_format == "coco17":
                raise ModelLoadError(f"{self.backend.model_path!r} outputs {len(coords)} keypoints; "
                                     f"coco17 needs {NUM_KEYPOINTS}")
            frame_xy = apply_affine(invert_affine(m), coords).astype(np.float32)
            kps, present = to_coco17(frame_xy, self.keypoint_format)
            sc, _ = to_coco17(scores, self.keypoint_format)
            if sigma is not None:
                sigma, _ = to_coco17(sigma * roi.width / self.input_size[0], self.keypoint_format)
        return Estimate(kps, sc.astype(np.float32), roi, float(sc[present].mean()), sigma=sigma,
                        timings_ms=t.ms)


def student_card_spec(meta: dict):
    """The CardSpec for a file whose metadata says ``edgepose.card = student``."""
    from edgepose.models import CardSpec

    if meta.get("edgepose.card") != "student":
        from edgepose.models import list_models

        raise ModelLoadError(f"edgepose.card {meta.get('edgepose.card')!r} is not a known card; valid: "
                             f"student, {', '.join(list_models())}")
    return CardSpec("student", (), lambda backends, name: StudentModel(backends[0], name=name),
                    "edgepose student (heatmap / SimCC / RLE head, configured by metadata)")
