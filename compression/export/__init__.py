"""Export compressed models with a parity check, embedded ``edgepose.*`` metadata and a manifest."""

from .onnx_export import (ExportConfig, ExportResult, build_metadata, export_onnx, set_metadata,
                          sha256_of, write_manifest)
from .tflite_export import TFLiteExportResult, export_tflite

__all__ = ["ExportConfig", "ExportResult", "build_metadata", "export_onnx", "set_metadata",
           "sha256_of", "write_manifest", "TFLiteExportResult", "export_tflite"]
