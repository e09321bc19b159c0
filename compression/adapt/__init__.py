"""Scene specialisation (``edgepose adapt``): a student fine-tuned on the teacher's labels of the
user's own scene, gated on later frames of the same scene. Names are imported lazily (torch)."""

from __future__ import annotations

import importlib

_NAMES = {"AdaptConfig": "scene", "AdaptResult": "scene", "adapt": "scene", "split_in_time": "scene",
          "collection_items": "scene", "label_segment": "scene", "make_student": "scene", "finetune": "scene",
          "export_int8": "scene", "gate_verdict": "scene", "STUDENTS": "scene", "quantize_scene": "scene",
          "AUGMENTS": "scene", "scene_augment": "scene",
          "GateDecision": "gate", "decide": "gate",
          "Agreement": "scoring", "CropModel": "scoring", "agreement": "scoring",
          "agreement_of": "scoring", "predict": "scoring", "save_report": "report"}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
