"""torch Dataset over cached pseudo-labels, with augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import AugmentConfig, augment
from .labels import LabelSet


class PseudoLabelDataset(Dataset):
    """Samples ``{"image", "keypoints", "maps"}`` for a student of input side ``out_size``.

    ``image`` is the student's normalised NCHW input (``rgb * scale + shift``), ``keypoints``
    (17, 3) the teacher's (y, x, score) normalised to the student crop, ``maps`` (18, s, s) the
    teacher's heatmaps + centre map warped the same way.
    """

    def __init__(self, labels: LabelSet, indices, *, out_size: int, scale, shift,
                 augment_cfg: AugmentConfig = AugmentConfig(), stride: int = 4, seed: int = 0):
        self.labels = labels
        self.indices = np.asarray(indices, dtype=np.int64)
        self.out_size, self.stride = int(out_size), int(stride)
        self.scale = torch.as_tensor(np.asarray(scale, np.float32)).view(3, 1, 1)
        self.shift = torch.as_tensor(np.asarray(shift, np.float32)).view(3, 1, 1)
        self.cfg = augment_cfg
        self.seed = seed
        self._epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (deterministic per (seed, epoch, index))."""
        self._epoch = epoch

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(uint8 image, keypoints, maps) of sample ``i`` after augmentation."""
        j = int(self.indices[i])
        rng = np.random.default_rng((self.seed, self._epoch, j))
        return augment(self.labels.image(j), self.labels.keypoints[j], self.labels.maps[j], self.cfg,
                       out_size=self.out_size, stride=self.stride, rng=rng)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img, kps, maps = self.raw(i)
        x = torch.from_numpy(img).permute(2, 0, 1).float() * self.scale + self.shift
        return {"image": x, "keypoints": torch.from_numpy(kps), "maps": torch.from_numpy(maps),
                "rgb": torch.from_numpy(img)}


def calibration_crops(labels: LabelSet, n: int, *, out_size: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` un-augmented student-size uint8 crops spread over the label set (for int8 calibration)."""
    idx = np.linspace(0, len(labels) - 1, num=min(n, len(labels))).round().astype(int)
    ds = PseudoLabelDataset(labels, idx, out_size=out_size, scale=np.ones(3), shift=np.zeros(3),
                            augment_cfg=AugmentConfig.none(), seed=seed)
    return [ds.raw(i)[0] for i in range(len(ds))]
