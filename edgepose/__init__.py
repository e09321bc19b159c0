"""edgepose: edge deployment SDK for video human pose estimation.

``import edgepose`` imports numpy only; runtimes (onnxruntime, LiteRT, OpenCV) load on first use.
"""

from edgepose.errors import (
    ConfigError,
    EdgePoseError,
    InputSpecError,
    MissingDependencyError,
    ModelLoadError,
    SourceError,
    UnknownNameError,
)
from edgepose.types import SKELETON, Keypoint, Pose, PoseResult, Source
from edgepose.version import __version__


def __getattr__(name):  # lazy re-exports: keep `import edgepose` lean
    if name in ("PoseEstimator", "EstimatorOptions", "RunningMode"):
        from edgepose import estimator

        return getattr(estimator, name)
    if name in ("MultiPoseEstimator", "MultiPoseOptions"):
        from edgepose import multi

        return getattr(multi, name)
    if name in ("list_models", "load_model"):
        from edgepose import models

        return getattr(models, name)
    raise AttributeError(f"module 'edgepose' has no attribute {name!r}")


__all__ = [
    "__version__", "EdgePoseError", "ConfigError", "InputSpecError", "MissingDependencyError",
    "ModelLoadError", "SourceError", "UnknownNameError", "Keypoint", "Pose", "PoseResult",
    "Source", "SKELETON", "PoseEstimator", "EstimatorOptions", "RunningMode", "list_models",
    "load_model", "MultiPoseEstimator", "MultiPoseOptions",
]
