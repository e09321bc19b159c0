"""One trainer for every compression method (see :mod:`.trainer`), its recipes and the CLI's ``edgepose train``.

Every method is a *loss module* on :class:`Trainer`: heatmap KD (``distill``), feature KD
(``long_kd``), OKDHP, ViTKD, DKD, the students (heatmap / SimCC / RLE / tiny ViT), the temporal
models and int8 QAT. Recipes (``recipes/*.yaml``) name a model, a teacher, a method, data and a
schedule; :func:`~.recipes.load_recipe` validates one,
:func:`~.recipes.run_recipe` runs it. Names are imported lazily.
"""

from __future__ import annotations

import importlib

_NAMES = {"Trainer": "trainer", "TrainResult": "trainer", "LossModule": "trainer", "total_loss": "trainer",
          "plot_log": "trainer", "TrainerConfig": "config", "lr_factor": "schedule", "pick_device": "dist",
          "load_recipe": "recipes", "run_recipe": "recipes", "list_recipes": "recipes", "Recipe": "recipes"}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
