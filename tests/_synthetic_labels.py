"""A tiny in-memory LabelSet for training tests: bright squares whose 'teacher' heatmaps peak on them."""

import numpy as np


def synthetic_labels(n: int = 16, size: int = 64, *, spread: tuple[float, float] = (0.25, 0.75),
                     torso: bool = False, path: str | None = None):
    """``n`` crops of ``size`` px, each a bright square at a random centre in ``spread`` (a fraction of
    the side); every joint and the teacher map sit on it. ``torso``: shoulders 0.15 above the hips,
    so the PCK torso normaliser is not zero."""
    import cv2

    from edgepose.compression.data.labels import LabelSet

    rng = np.random.default_rng(0)
    jpegs, kps, maps = [], [], []
    yy, xx = np.mgrid[0:size // 4, 0:size // 4] + 0.5
    for _ in range(n):
        cy, cx = rng.uniform(*spread, size=2)
        img = np.full((size, size, 3), 40, np.uint8)
        y0, x0 = int(cy * size), int(cx * size)
        img[y0 - 4:y0 + 4, x0 - 4:x0 + 4] = 230
        g = np.exp(-((yy - cy * size / 4) ** 2 + (xx - cx * size / 4) ** 2) / 2.0)
        m = np.zeros((18, size // 4, size // 4), np.uint8)
        m[:17] = np.rint(g * 255)
        jpegs.append(cv2.imencode(".jpg", img)[1].reshape(-1))
        k = np.tile([cy, cx, 0.9], (17, 1)).astype(np.float32)
        if torso:
            k[[5, 11], 0] -= 0.15
        kps.append(k)
        maps.append(m)
    off = np.concatenate([[0], np.cumsum([len(j) for j in jpegs])])
    extra = () if path is None else (path,)
    return LabelSet(np.concatenate(jpegs), off, np.stack(kps), np.stack(maps), [f"img{i}.jpg#0" for i in range(n)],
                    size, *extra)
