"""The DKD video card: a frame encoder whose joints are localised by pose kernels from the last frame.

The model file (exported by ``edgepose.compression.students.dkd_model.export_dkd``) is one graph
``(image, kernels, gate) -> (heatmaps, kernels_out)``. The card keeps ``kernels_out`` of each
frame as state and feeds it to the next one with ``gate = 1``; on a **keyframe** it feeds zeros
with ``gate = 0`` and the graph is the plain per-frame student. Keyframes are: the first frame,
every frame after :meth:`PoseModel.initial_roi` (the estimator calls it when the track is lost
or starts), a frame after a low-confidence one, a crop whose scale jumped (kernels are
translation- but not scale-invariant), and, with ``keyframe_interval`` N > 0, every N-th frame.

Use it in video mode (``PoseEstimator`` ``running_mode="video"``); image mode works but every
image after the first is read with the previous image's kernels.

Metadata (``edgepose.*``): ``card`` = ``dkd``; ``keypoint_format``; ``input_layout`` (NCHW);
``mean`` / ``std`` (0-255 units); ``outputs`` ``{"heatmaps": ..., "state": ...}``;
``state_inputs`` ``{"state": ..., "gate": ...}``; ``keyframe_interval`` (int, 0 = none).
"""

from __future__ import annotations

import json

import numpy as np

from edgepose.backends.base import Backend
from edgepose.errors import ConfigError, ModelLoadError
from edgepose.models._crop import Roi, apply_affine, crop, invert_affine
from edgepose.models.base import Estimate, PoseModel, StageTimer
from edgepose.models.student import decode_heatmaps
from edgepose.types import FORMAT_TO_COCO17, to_coco17

#: Mean keypoint score below which the next frame is a keyframe (stale kernels would follow
#: whatever the low-confidence heatmaps pooled).
MIN_STATE_SCORE = 0.2
#: ROI side ratio between consecutive frames beyond which the next frame is a keyframe.
MAX_SCALE_CHANGE = 1.5


def _meta(meta: dict, key: str, path: str, valid: str) -> str:
    full = f"edgepose.{key}"
    if full not in meta:
        raise ModelLoadError(f"{path!r} lacks metadata key {full!r} ({valid}); re-export it with "
                             "edgepose.compression.students.dkd_model.export_dkd")
    return meta[full]


class DKDModel(PoseModel):
    """Runs an exported DKD graph frame by frame, carrying the pose kernels between frames.

    Args:
        backend: the opened DKD model file.
        name: card name.
        keyframe_interval: force a keyframe every N frames (None: the file's
            ``edgepose.keyframe_interval``; 0: only when needed).
    """

    def __init__(self, backend: Backend, *, name: str = "dkd", keyframe_interval: int | None = None):
        super().__init__(backend)
        meta, path = backend.metadata, backend.model_path
        self.name = name
        if meta.get("edgepose.card") != "dkd":
            raise ModelLoadError(f"{path!r}: edgepose.card is {meta.get('edgepose.card')!r}, the DKD card needs 'dkd'")
        self.keypoint_format = _meta(meta, "keypoint_format", path, "e.g. coco17")
        if self.keypoint_format not in FORMAT_TO_COCO17:
            raise ModelLoadError(f"{path!r}: edgepose.keypoint_format {self.keypoint_format!r} is not one of "
                                 f"{', '.join(sorted(FORMAT_TO_COCO17))}")
        if _meta(meta, "input_layout", path, "NCHW") != "NCHW":
            raise ModelLoadError(f"{path!r}: the DKD card reads NCHW inputs only")
        try:
            self.mean = np.asarray(json.loads(_meta(meta, "mean", path, "3 floats")), np.float32)
            self.std = np.asarray(json.loads(_meta(meta, "std", path, "3 floats")), np.float32)
            outs = json.loads(_meta(meta, "outputs", path, "role -> tensor name"))
            ins = json.loads(_meta(meta, "state_inputs", path, "role -> tensor name"))
            self._heat, self._state_out = outs["heatmaps"], outs["state"]
            self._state_in, self._gate = ins["state"], ins["gate"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelLoadError(f"{path!r}: bad DKD metadata ({exc!r}); outputs needs heatmaps + state, "
                                 "state_inputs needs state + gate") from exc
        if keyframe_interval is None:
            keyframe_interval = int(meta.get("edgepose.keyframe_interval", 0))
        if keyframe_interval < 0:
            raise ConfigError(f"keyframe_interval must be >= 0, got {keyframe_interval!r}")
        self.keyframe_interval = keyframe_interval
        specs = {s.name: s for s in backend.inputs}
        missing = [n for n in (self._state_in, self._gate) if n not in specs]
        if missing:
            raise ModelLoadError(f"{path!r} has no input {missing[0]!r} named by edgepose.state_inputs")
        self._img = next(s for s in backend.inputs if s.name not in (self._state_in, self._gate))
        self.input_size = (int(self._img.shape[3]), int(self._img.shape[2]))
        self._zeros = np.zeros([int(d) for d in specs[self._state_in].shape], np.float32)
        self._scale = (1.0 / self.std).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        """Drop the carried kernels: the next frame is a keyframe."""
        self._state: np.ndarray | None = None
        self._last_side: float | None = None
        self._since_key = 0
        #: Whether the last :meth:`estimate` ran as a keyframe.
        self.last_was_keyframe = True

    def initial_roi(self, frame: np.ndarray):
        """A new or lost track starts here, so the kernels are dropped."""
        self.reset()
        return super().initial_roi(frame)

    def _keyframe_due(self, roi: Roi) -> bool:
        if self._state is None:
            return True
        if self.keyframe_interval and self._since_key >= self.keyframe_interval:
            return True
        side = max(roi.width, roi.height)
        ratio = side / self._last_side if self._last_side else 1.0
        return not (1.0 / MAX_SCALE_CHANGE <= ratio <= MAX_SCALE_CHANGE)

    def estimate(self, frame: np.ndarray, roi: Roi) -> Estimate:
        t = StageTimer()
        with t("preprocess"):
            w, h = self.input_size
            img, m = crop(frame, roi, w, h)
            x = ((img.astype(np.float32) - self.mean) * self._scale).transpose(2, 0, 1)[None]
            key = self._keyframe_due(roi)
            feeds = {self._img.name: np.ascontiguousarray(x, dtype=self._img.dtype),
                     self._state_in: self._zeros if key else self._state,
                     self._gate: np.array([0.0 if key else 1.0], np.float32)}
        with t("infer"):
            out = self.backend.run(feeds)
        with t("decode"):
            coords, scores = decode_heatmaps(out[self._heat][0], self.input_size)
            frame_xy = apply_affine(invert_affine(m), coords).astype(np.float32)
            kps, present = to_coco17(frame_xy, self.keypoint_format)
            sc, _ = to_coco17(scores, self.keypoint_format)
        score = float(sc[present].mean())
        self.last_was_keyframe = key
        self._since_key = 1 if key else self._since_key + 1
        self._last_side = max(roi.width, roi.height)
        self._state = out[self._state_out] if score >= MIN_STATE_SCORE else None
        return Estimate(kps, sc.astype(np.float32), roi, score, timings_ms=t.ms)


def dkd_card_spec(meta: dict):
    """The CardSpec for a file whose metadata says ``edgepose.card = dkd``."""
    from edgepose.models import CardSpec

    return CardSpec("dkd", (), lambda backends, name: DKDModel(backends[0], name=name),
                    "edgepose DKD video student (pose kernels carried between frames; configured by metadata)")
