"""Evaluation: datasets (coco_mini, mmpose_mini), PCK / OKS-AP metrics, runners.

Submodules load lazily so ``import edgepose.eval`` stays numpy-only.

- :mod:`edgepose.eval.datasets`: ``list_datasets()``, ``load_dataset(name, root)`` -> ``Person`` list.
- :mod:`edgepose.eval.metrics`: ``pck_torso``, ``pck_bbox``, ``oks``, ``oks_ap``.
- :mod:`edgepose.eval.runner`: ``evaluate(model, datasets=..., root=...)`` -> ``EvalReport``.
- :mod:`edgepose.eval.video`: ``load_reference``, ``run_tracked``, ``compare_tracks``.

The data root (folder with coco_mini/ and mmpose_mini/) defaults to ``$EDGEPOSE_DATA``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Person": "datasets", "list_datasets": "datasets", "load_dataset": "datasets",
    "resolve_data_root": "datasets", "DATA_ENV": "datasets",
    "Pck": "metrics", "pck_torso": "metrics", "pck_bbox": "metrics", "oks": "metrics",
    "oks_ap": "metrics", "torso_size": "metrics",
    "evaluate": "runner", "EvalReport": "runner", "EvalRow": "runner",
    "ReferenceTrack": "video", "load_reference": "video", "compare_tracks": "video",
    "run_tracked": "video",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"edgepose.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'edgepose.eval' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
