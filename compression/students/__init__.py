"""Student models: a MobileNet-style CNN with heatmap / SimCC / RLE heads, their losses and export.

Example:
    >>> from edgepose.compression.students import StudentConfig, StudentNet, HeatmapKD
    >>> net = StudentNet(StudentConfig(input_size=128, head="heatmap"))
    >>> objective = HeatmapKD(net)  # train with edgepose.compression.train_student.train
"""

from .cnn import HEADS, OUTPUTS, StudentConfig, StudentDeploy, StudentNet, count_parameters
from ..export.students import StudentExportConfig, StudentExportResult, export_onnx_student, export_tflite_student
from .losses import HeatmapKD, SimCCKD, heatmap_kd_loss, simcc_kd_loss
from .rle import RealNVP, RLEHead, RLEObjective, rle_loss

__all__ = ["HEADS", "OUTPUTS", "StudentConfig", "StudentDeploy", "StudentNet", "count_parameters",
           "StudentExportConfig", "StudentExportResult", "export_onnx_student", "export_tflite_student",
           "HeatmapKD", "SimCCKD", "heatmap_kd_loss", "simcc_kd_loss", "RealNVP", "RLEHead", "RLEObjective",
           "rle_loss"]
