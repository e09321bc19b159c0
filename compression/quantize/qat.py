"""Quantisation-aware fine-tuning of an int8 body toward its own float outputs (self-distillation).

Post-training int8 of MoveNet Lightning loses 1.5-2 PCK on the evaluation set; most of it is
rounding error that training with the rounding in the loop can absorb. Here the body is exported
(torch.export), annotated with litert-torch's PT2E quantizer using fake-quantise observers
(int8 per-channel symmetric weights, int8 activations with moving-average ranges), first
calibrated on the calibration crops (as post-training quantisation), then fine-tuned for a few
hundred steps so that its outputs match the **float model's own outputs** (relative MSE per
head) on augmented training crops. No label is needed, and the evaluation set is never read.

litert-torch's ``prepare_qat_pt2e`` path fuses conv + batch-norm patterns and fails on this torch
release; imported MoveNet bodies have their batch norms folded already, so the static
annotation with fake-quantise constructors (``prepare_pt2e``) gives the same graph.

litert-torch is not in the dev extras (installed ``--no-deps`` where used); tests that need it
are ``@pytest.mark.slow``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QATConfig:
    """Quantisation-aware fine-tuning recipe.

    Attributes:
        steps: optimiser steps (0 = calibration with the fake-quantise observers only).
        lr: Adam learning rate (small: the float weights are already right).
        batch: crops per step.
        seed: draw of the training crops.
        loss: what is matched to the float model: ``"logits"`` (every output as returned,
            relative MSE) or ``"probabilities"`` (the outputs listed as ``sigmoid_outputs``
            passed through the sigmoid first: the heat / centre maps where the decoder reads
            them, not their large negative background logits).
    """

    steps: int = 1000
    lr: float = 1e-5
    batch: int = 8
    seed: int = 0
    loss: str = "logits"

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ConfigError(f"QATConfig.steps must be an int >= 0, got {self.steps!r}")
        if not self.lr > 0:
            raise ConfigError(f"QATConfig.lr must be > 0, got {self.lr!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"QATConfig.batch must be an int >= 1, got {self.batch!r}")
        if self.loss not in QAT_LOSSES:
            raise ConfigError(f"QATConfig.loss must be one of {QAT_LOSSES}, got {self.loss!r}")


#: The choices of :attr:`QATConfig.loss`.
QAT_LOSSES = ("logits", "probabilities")


class QATLoss(torch.nn.Module):
    """Relative MSE of the fake-quantised graph's outputs to the float model's (a loss module).

    ``train()`` / ``eval()`` only flip this wrapper's flag: exported graphs do not support them
    (:func:`move_exported_model_to_eval` switches the graph at the end)."""

    def __init__(self, student, teacher, outputs, var):
        super().__init__()
        self.student, self.teacher, self.outputs, self.var = student, teacher, outputs, var
        for p in teacher.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def forward(self, x) -> torch.Tensor:
        with torch.no_grad():
            target = self.outputs(self.teacher, x)
        out = self.outputs(self.student, x)
        return sum(((o - t) ** 2).mean() / v for o, t, v in zip(out, target, self.var))


def qat_body(body: torch.nn.Module, normalise: Callable[[np.ndarray], torch.Tensor],
             calibration: list[np.ndarray], draw: Callable[[np.random.Generator, int], np.ndarray],
             cfg: QATConfig = QATConfig(), *, sigmoid_outputs: tuple[int, ...] = (), progress: bool = True):
    """Fine-tune an int8 version of ``body`` toward ``body``'s float outputs.

    Args:
        body: float module, normalised NCHW input -> tuple of output tensors (e.g. the logit
            body of :mod:`~edgepose.compression.export.tflite_export`). Not modified.
        normalise: (N, H, W, 3) uint8 crops -> the body's input.
        calibration: uint8 (H, W, 3) crops from the training frames; they set the initial ranges.
        draw: ``draw(rng, n)`` -> (n, H, W, 3) uint8 training crops (augmented), never the
            evaluation set.
        cfg: the recipe.
        sigmoid_outputs: indices of the outputs that are logits of a sigmoid (for
            ``cfg.loss == "probabilities"``).

    Returns:
        (converted PT2E int8 graph module, the quantizer, loss history: list of dicts).
    """
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    teacher = copy.deepcopy(body).eval()
    student = copy.deepcopy(body).eval()
    cal = np.stack(calibration)
    example = normalise(cal[[0, min(1, len(cal) - 1)]])  # batch 2: a batch of 1 would be specialised
    batch = torch.export.Dim("batch", min=1, max=max(64, cfg.batch))
    m = torch.export.export(student, (example,), dynamic_shapes=({0: batch},)).module()
    qcfg = dataclasses.replace(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_qat=True),
                               is_qat=False)  # static annotation, fake-quantise constructors (module doc)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(qcfg)
    m = quantize_pt2e.prepare_pt2e(m, quantizer)
    sig = set(sigmoid_outputs) if cfg.loss == "probabilities" else set()

    def outputs(module, x):
        return [torch.sigmoid(o) if i in sig else o for i, o in enumerate(module(x))]

    with torch.no_grad():
        for i in range(0, len(cal), 8):
            m(normalise(cal[i:i + 8]))
        ref = outputs(teacher, normalise(cal[:16]))
    var = [float(t.var()) + 1e-8 for t in ref]
    rng = np.random.default_rng(cfg.seed)
    params = [p for p in m.parameters() if p.requires_grad]
    history = []
    if cfg.steps:
        from ..train import Trainer, TrainerConfig

        tcfg = TrainerConfig(steps=cfg.steps, batch_size=cfg.batch, lr=cfg.lr, weight_decay=0.0, optimizer="adam",
                             schedule="constant", grad_clip=0.0, seed=cfg.seed, device="cpu", channels_last=False,
                             check_finite=False, progress=progress, desc="int8 QAT")
        res = Trainer(QATLoss(m, teacher, outputs, var), lambda step: normalise(draw(rng, cfg.batch)), tcfg,
                      params=params).fit()
        history = [{"step": h["step"] - 1, "loss": h["loss"], "seconds": round(h["t"], 1)} for h in res.history
                   if (h["step"] - 1) % 50 == 0 or h["step"] == cfg.steps]
        log.info("int8 QAT: %d steps in %.0fs", cfg.steps, res.seconds)
    move_exported_model_to_eval(m)
    return quantize_pt2e.convert_pt2e(m, fold_quantize=False), quantizer, history


def relative_output_error(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    """Sum over outputs of MSE(a, b) / var(b) on ``x``: the QAT objective, for held-out crops."""
    with torch.no_grad():
        return float(sum(((p - q) ** 2).mean() / (q.var() + 1e-8) for p, q in zip(a(x), b(x))))


__all__ = ["QAT_LOSSES", "QATConfig", "QATLoss", "qat_body", "relative_output_error"]
