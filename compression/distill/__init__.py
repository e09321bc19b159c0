"""Distillation fine-tuning: ``distill(student, labels, cfg, reference=...)`` -> DistillReport."""

from .distill import DistillConfig, DistillReport, distill, validation_loss
from .losses import kd_losses, reference_loss, task_losses

__all__ = ["DistillConfig", "DistillReport", "distill", "validation_loss", "kd_losses",
           "reference_loss", "task_losses"]
