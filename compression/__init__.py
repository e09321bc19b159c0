"""edgepose.compression: compress a pretrained pose model for a device (torch lives only here).

One verb per technique, one typed, serialisable config each:

* :func:`~edgepose.compression.importer.import_movenet` - ONNX MoveNet -> trainable torch module
  (raw head maps); :func:`~edgepose.compression.importer.decode_heads` is its numpy decoder.
* :func:`~edgepose.compression.data.label_media` - teacher pseudo-labels, cached by content hash.
* :func:`~edgepose.compression.prune.prune` (:class:`PruneConfig`) - Torch-Pruning DepGraph,
  magnitude / Taylor / content-aware importance, exactness guard, JSON plan.
* :func:`~edgepose.compression.distill.distill` (:class:`DistillConfig`) - KD fine-tuning.
* :func:`~edgepose.compression.export.export_onnx` (:class:`ExportConfig`) - self-checking export
  with ``edgepose.*`` metadata.
* :func:`~edgepose.compression.quantize.quantize` (:class:`QuantizeConfig`) - ORT static QDQ int8.
* :func:`~edgepose.compression.export.export_tflite` - fp32 / PT2E int8 TFLite through litert-torch.
* :func:`~edgepose.compression.quantize.layer_sensitivity` - per-layer int8 sensitivity and the
  float fallback layers (``QuantizeConfig.exclude_nodes``).
* :func:`~edgepose.compression.budget.search_budget` (:class:`BudgetConfig`) - the least pruning
  whose measured / emulated latency fits a device profile's frame budget.
* :mod:`~edgepose.compression.distill.long_kd` - time-budgeted head + feature KD with checkpoints.
* :func:`~edgepose.compression.pipeline.compress` - the whole chain (``edgepose compress``).

Submodules import torch; this package module itself imports nothing heavy, names resolve lazily.
The verbs ``prune`` / ``distill`` / ``quantize`` share their subpackage's name, so import them
from it: ``from edgepose.compression.prune import prune, PruneConfig``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "import_movenet": "importer", "ImportConfig": "importer", "decode_heads": "importer",
    "LabelConfig": "data", "label_media": "data", "scan_media": "data", "training_sources": "data",
    "PruneConfig": "prune", "apply_plan": "prune",
    "DistillConfig": "distill",
    "ExportConfig": "export", "export_onnx": "export", "export_tflite": "export",
    "QuantizeConfig": "quantize", "layer_sensitivity": "quantize",
    "BudgetConfig": "budget", "BudgetError": "budget", "search_budget": "budget",
    "CompressConfig": "pipeline", "compress": "pipeline",
}


def __getattr__(name):
    if name in _EXPORTS:
        mod = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
