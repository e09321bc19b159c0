"""ROI crops: the affine maps and the crop image agree with hand-computed values."""

import math

import numpy as np
import pytest

from edgepose.models._crop import Roi, apply_affine, crop, invert_affine, roi_to_crop_matrix

pytestmark = pytest.mark.core


def test_square_roi_edges_land_on_crop_edges():
    m = roi_to_crop_matrix(Roi.square(50, 40, 20), 10, 10)
    np.testing.assert_allclose(apply_affine(m, [[40, 30], [60, 50], [50, 40]]), [[0, 0], [10, 10], [5, 5]])


def test_rotated_roi_round_trips_and_turns_the_person_upright():
    roi = Roi.square(100, 100, 50, rotation=math.pi / 2)
    m = roi_to_crop_matrix(roi, 50, 50)
    pts = np.array([[100.0, 80.0], [123.0, 91.0]])
    np.testing.assert_allclose(apply_affine(invert_affine(m), apply_affine(m, pts)), pts, atol=1e-9)
    # A point 20 px to the right of the centre ends 20 px below the crop centre after +90 degrees.
    np.testing.assert_allclose(apply_affine(m, [[120.0, 100.0]]), [[25.0, 45.0]], atol=1e-9)


def test_eval_protocol_roi_is_square_1_25_times_the_longer_box_side():
    roi = Roi.from_box(10, 20, 50, 100)
    assert (roi.cx, roi.cy, roi.width, roi.height) == (30, 60, 100, 100)


def test_crop_pixels_sample_the_right_place_with_black_border():
    frame = np.zeros((40, 40, 3), np.uint8)
    frame[10:20, 10:20] = 200
    out, _ = crop(frame, Roi.square(15, 15, 20), 20, 20)  # covers 5..25
    assert out[10, 10].tolist() == [200, 200, 200]   # frame (15, 15)
    assert out[2, 2].tolist() == [0, 0, 0]           # frame (7, 7)
    border, _ = crop(frame, Roi.square(0, 0, 20), 20, 20)
    assert border[2, 2].tolist() == [0, 0, 0]        # outside the frame: black
