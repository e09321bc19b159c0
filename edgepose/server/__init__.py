"""KServe V2 HTTP server (embedded default) and Triton model-repository export.

``from edgepose.server import PoseServer`` imports only the stdlib and numpy; model runtimes
load when a model is served.
"""

from edgepose.server.app import PoseServer, ServerOptions
from edgepose.protocol import DeadlineExceededError, ProtocolError
from edgepose.server.served import IMAGE, IMAGE_BYTES, KEYPOINTS, OnnxServedModel, PoseServedModel, ServedModel


def __getattr__(name):  # the export needs the onnx package: load it on use
    if name in ("export_triton", "TritonExport"):
        from edgepose.server import triton

        return getattr(triton, name)
    raise AttributeError(f"module 'edgepose.server' has no attribute {name!r}")


__all__ = ["PoseServer", "ServerOptions", "ProtocolError", "DeadlineExceededError", "ServedModel", "PoseServedModel",
           "OnnxServedModel", "IMAGE", "IMAGE_BYTES", "KEYPOINTS", "export_triton", "TritonExport"]
