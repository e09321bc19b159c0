"""Temporal models for video: the learned smoother (SmoothNet idea) and sparse-keyframe recovery
(DeciWatch idea), trained on teacher tracks and exported to ONNX for ``edgepose.video``.

* :mod:`.data` - licence-clean training videos; edge-model and teacher tracks, cached as .npz.
* :mod:`.windows` - training windows, normalised exactly as the runtime does.
* :mod:`.models` - :class:`~.models.SmoothNet`, :class:`~.models.RecoveryNet` (torch).
* :mod:`.train` - ``python -m edgepose.compression.temporal.train --kind smoother|recovery``.
* :mod:`.export` - ONNX export with metadata and a torch-vs-onnxruntime parity check.
* :mod:`.baselines` - One Euro tuned on the same training tracks (the SDK defaults and the
  constrained-best baseline: lowest jitter at <= +0.5 px position error).

Submodules import torch (except :mod:`.data`, :mod:`.windows` and :mod:`.baselines`); this
module imports nothing.
"""
