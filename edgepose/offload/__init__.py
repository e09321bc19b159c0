"""Cloud-edge offload: policy, timing statistics, controllers, KServe V2 client, network emulation, split inference.

Imports numpy and the stdlib only; OpenCV loads when the runtime encodes a crop, ``onnx`` when
the split planner cuts a graph.
"""

from edgepose.offload.controllers import (KeyframeConfig, KeyframeController, OffloadControlConfig,
                                          OffloadRateController)
from edgepose.offload.client import Backoff, ClientOptions, OffloadClient, Pending, Reply, TokenBucket
from edgepose.offload.netem import PRESETS, LinkSpec, NetworkEmulator, get_link, link_from_profile
from edgepose.offload.policy import NetworkEstimate, OffloadPolicy, PolicyConfig, hard_frame_score
from edgepose.offload.timing import BudgetTracker, LatencyStats


def __getattr__(name):  # the runtime pulls in the estimator and OpenCV: load on use
    if name in ("CloudEdgeRuntime", "RuntimeOptions", "reseed_estimator"):
        from edgepose.offload import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'edgepose.offload' has no attribute {name!r}")


__all__ = ["BudgetTracker", "KeyframeConfig", "KeyframeController", "LatencyStats", "OffloadControlConfig",
           "OffloadRateController", "Backoff", "ClientOptions",
           "OffloadClient", "Pending", "Reply", "TokenBucket", "PRESETS", "LinkSpec", "NetworkEmulator", "get_link",
           "link_from_profile", "NetworkEstimate", "OffloadPolicy", "PolicyConfig", "hard_frame_score",
           "CloudEdgeRuntime", "RuntimeOptions", "reseed_estimator"]
