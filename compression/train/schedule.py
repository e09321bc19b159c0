"""The one learning-rate schedule: linear warm-up, then a cosine to ``floor`` over steps or a wall-clock budget."""

from __future__ import annotations

import math


def lr_factor(step: int, *, warmup: int, total_steps: int = 0, progress: float | None = None,
              floor: float = 0.0) -> float:
    """Multiplier of the peak learning rate for optimiser step ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup`` for the first ``warmup`` steps. Then a half cosine from 1 to 0
    over the remaining progress: ``progress`` (a fraction in [0, 1], e.g. of a wall-clock budget)
    when given, else ``(step - warmup) / (total_steps - warmup)``. The result is at least ``floor``.
    """
    if step < warmup:
        f = (step + 1) / warmup
    else:
        # (the operation order of the six formulas this replaces, so the values are bit-identical)
        angle = (math.pi * (step - warmup) / max(1, total_steps - warmup) if progress is None
                 else math.pi * min(1.0, max(0.0, progress)))
        f = 0.5 * (1 + math.cos(angle))
    return max(f, floor) if floor else f


__all__ = ["lr_factor"]
