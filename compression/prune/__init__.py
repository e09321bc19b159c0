"""Structured channel pruning (Torch-Pruning DepGraph) with magnitude / Taylor / content-aware importance."""

from .importance import IMPORTANCES, content_objective, keypoint_discs, taylor_objective
from .prune import (PruneConfig, PruneResult, apply_plan, count, exactness_guard, load_plan, prune,
                    save_plan, zero_channels)

__all__ = ["IMPORTANCES", "content_objective", "keypoint_discs", "taylor_objective", "PruneConfig",
           "PruneResult", "apply_plan", "count", "exactness_guard", "load_plan", "prune", "save_plan",
           "zero_channels"]
