"""Shared fixtures: the real assets in $EDGEPOSE_ASSETS (default ../shared/assets; CI has them there too)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgepose.assets import assets_dir

REPO = Path(__file__).resolve().parent.parent
ASSETS = assets_dir(check=False)
MODELS = ASSETS / "models"

# Model names resolve against the shared model folder in tests.
os.environ.setdefault("EDGEPOSE_MODEL_DIR", str(MODELS))


@pytest.fixture(scope="session")
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.fail(f"shared assets not found at {ASSETS}; set EDGEPOSE_ASSETS")
    return ASSETS


def read_rgb(path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {path}"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def pose_jpg(assets) -> np.ndarray:
    """The single-person tfjs test image (1000x667)."""
    return read_rgb(assets / "data" / "tfjs_testdata" / "pose.jpg")
