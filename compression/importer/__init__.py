"""Import a pretrained ONNX pose model as a trainable torch module (the body up to its heads).

``import_movenet(path)`` -> :class:`MoveNetTorch`; ``decode_heads`` is the numpy decoder.
"""

from ._graph import BODY_OPS, OnnxBody, build_body
from .movenet import (FLIP_PAIRS, HEADS, DecodeConstants, ImportConfig, MoveNetDeploy, MoveNetTorch,
                      decode_heads, decode_heads_torch, import_movenet)

__all__ = ["BODY_OPS", "OnnxBody", "build_body", "FLIP_PAIRS", "HEADS", "DecodeConstants",
           "ImportConfig", "MoveNetDeploy", "MoveNetTorch", "decode_heads", "decode_heads_torch",
           "import_movenet"]
