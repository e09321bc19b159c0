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


def test_index_convention_samples_pixel_i_at_coordinate_i_and_is_scoped_to_its_block():
    from edgepose.models._crop import crop_convention

    # A 1-px-wide vertical line at column 20 of a 40x40 frame; ROI = columns 10..30 -> 20 crop px.
    frame = np.zeros((40, 40, 3), np.uint8)
    frame[:, 20] = 200
    roi = Roi.square(20, 20, 20)
    centre, _ = crop(frame, roi, 20, 20)
    with crop_convention("index"):
        index, m = crop(frame, roi, 20, 20)
    after, _ = crop(frame, roi, 20, 20)
    # centre: pixel 20 spans [20, 21] -> crop column 10; index: pixel 20 sits at 20 -> also column
    # 10, but for a 2x upscale the two differ by half a source pixel minus half a crop pixel.
    np.testing.assert_array_equal(after, centre)
    assert index[10, 10, 0] == 200 and index[10, 9, 0] == 0 and index[10, 11, 0] == 0
    np.testing.assert_allclose(m, roi_to_crop_matrix(roi, 20, 20))
    up = Roi.square(20, 20, 10)  # 2x upscale: index puts pixel 20 at crop x = 10 exactly
    with crop_convention("index"):
        idx_up, _ = crop(frame, up, 20, 20)
    ctr_up, _ = crop(frame, up, 20, 20)
    assert idx_up[5, 10, 0] == 200 and idx_up[5, 9, 0] == 100 and idx_up[5, 11, 0] == 100
    # centre: pixel 20's centre (20.5) lands at crop (20.5 - 15) * 2 = 11 -> index 10.5: columns 10, 11
    assert ctr_up[5, 10, 0] == 150 and ctr_up[5, 11, 0] == 150


def test_an_unknown_crop_convention_is_refused_with_the_choices():
    from edgepose.models._crop import crop_convention

    with pytest.raises(ValueError, match="'corner' is not one of centre, index"):
        with crop_convention("corner"):
            pass
