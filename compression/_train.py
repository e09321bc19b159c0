"""Loss bookkeeping shared by the method wrappers (the optimiser step itself lives in
:mod:`edgepose.compression.train`, the one training loop)."""

from __future__ import annotations

import torch

#: History keys of :class:`~edgepose.compression.train.Trainer` that are not loss terms.
_NOT_TERMS = ("step", "loss", "lr", "t", "rank_loss")


def record_step(rep, step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
    """Append the step's total loss and each loss term to a report with ``steps``/``train``/``terms``."""
    rep.steps.append(step)
    rep.train.append(float(loss.detach()))
    for k, v in terms.items():
        rep.terms.setdefault(k, []).append(float(v.detach()))


def fill_report(rep, history: list[dict]) -> None:
    """Copy a Trainer history (one dict per step) into a report's ``steps``/``train``/``terms``."""
    for h in history:
        rep.steps.append(h["step"])
        rep.train.append(h["loss"])
        for k, v in h.items():
            if k not in _NOT_TERMS and not k.startswith("_"):
                rep.terms.setdefault(k, []).append(v)
