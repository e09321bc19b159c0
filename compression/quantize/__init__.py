"""int8 quantisation: ONNX Runtime static QDQ, per-channel, selectable calibration."""

from .ort_static import (CALIBRATIONS, QuantizeConfig, QuantizeResult, calibration_ranges, decoder_nodes,
                         quantize)
from .sensitivity import SensitivityReport, layer_sensitivity, proxy_pck

__all__ = ["CALIBRATIONS", "QuantizeConfig", "QuantizeResult", "calibration_ranges", "decoder_nodes",
           "quantize", "SensitivityReport", "layer_sensitivity", "proxy_pck"]
