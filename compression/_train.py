"""The optimiser step and loss bookkeeping shared by the trainers (distill, ViTKD, DKD, students)."""

from __future__ import annotations

import torch


def optimizer_step(loss: torch.Tensor, params, opt, sched=None, *, clip: float = 5.0) -> None:
    """Backward ``loss``, clip the gradient norm of ``params`` to ``clip``, step ``opt`` (and ``sched``)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    if sched is not None:
        sched.step()


def record_step(rep, step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
    """Append the step's total loss and each loss term to a report with ``steps``/``train``/``terms``."""
    rep.steps.append(step)
    rep.train.append(float(loss.detach()))
    for k, v in terms.items():
        rep.terms.setdefault(k, []).append(float(v.detach()))
