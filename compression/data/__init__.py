"""Training data: media discovery, teacher pseudo-labels (cached), augmentation, torch datasets."""

from .labels import LabelConfig, LabelSet, OnnxTeacher, PersonDetector, label_media, load_labels
from .sources import MediaItem, iter_frames, scan_media, training_sources

__all__ = ["LabelConfig", "LabelSet", "OnnxTeacher", "PersonDetector", "label_media", "load_labels",
           "MediaItem", "iter_frames", "scan_media", "training_sources"]
