"""BlazePose card: pure-numpy decoders (core) and the real detector + landmark models (backend)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgepose.backends.base import TensorSpec
from edgepose.backends.null import NullBackend
from edgepose.errors import ModelLoadError
from edgepose.models._crop import Roi, apply_affine, invert_affine, roi_to_crop_matrix
from edgepose.models.base import Estimate
from edgepose.models.blazepose import (
    NUM_ANCHORS,
    BlazePose,
    decode_detections,
    decode_landmarks,
    normalize_radians,
    refine_from_heatmap,
    roi_from_alignment,
    ssd_anchors,
    weighted_nms,
)

core = pytest.mark.core
backend = pytest.mark.backend


# -- anchors and detection decoding -----------------------------------------------------------
@core
def test_detector_anchors_number_2254_with_two_per_cell_at_stride_8_and_six_at_stride_32():
    a = ssd_anchors(224)
    assert a.shape == (NUM_ANCHORS, 4) == (2254, 4)
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28, 1, 1])
    np.testing.assert_allclose(a[1], a[0])  # second anchor of the first 28x28 cell
    np.testing.assert_allclose(a[2, :2], [1.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[28 * 28 * 2, :2], [0.5 / 14, 0.5 / 14])
    last = a[-294:]  # 7x7 cells x 6 anchors (three stride-32 layers share the map)
    np.testing.assert_allclose(last[:6, :2], np.tile([0.5 / 7, 0.5 / 7], (6, 1)))
    np.testing.assert_allclose(last[-1, :2], [6.5 / 7, 6.5 / 7])
    assert (a[:, 2:] == 1).all()


@core
def test_decode_detections_offsets_box_and_keypoints_from_the_anchor_and_drops_low_scores():
    anchors = np.array([[0.5, 0.5, 1, 1], [0.25, 0.75, 1, 1], [0.1, 0.1, 1, 1]], np.float32)
    raw = np.zeros((3, 12), np.float32)
    raw[0, :4] = [22.4, -11.2, 44.8, 22.4]  # centre +0.1,-0.05; size 0.2 x 0.1 (units of 224)
    raw[0, 4:6] = [0.0, 56.0]  # keypoint 0 at (0.5, 0.75)
    raw[1, 10:12] = [-22.4, 0.0]  # keypoint 3 at (0.15, 0.75)
    logits = np.array([2.0, 0.0, -0.01], np.float32)  # sigmoid 0.88, 0.5 (kept), 0.4975 (dropped)
    boxes, kps, scores = decode_detections(raw, logits, anchors)
    assert len(boxes) == 2
    np.testing.assert_allclose(boxes[0], [0.5, 0.4, 0.7, 0.5], atol=1e-6)
    np.testing.assert_allclose(kps[0, 0], [0.5, 0.75], atol=1e-6)
    np.testing.assert_allclose(kps[0, 1], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(kps[1, 3], [0.15, 0.75], atol=1e-6)
    np.testing.assert_allclose(scores, [1 / (1 + math.exp(-2)), 0.5], atol=1e-6)


@core
def test_weighted_nms_merges_overlapping_boxes_by_score_and_keeps_the_rest():
    boxes = np.array([[0, 0, 10, 10],  # A 0.9
                      [1, 0, 11, 10],  # B 0.6: IoU(A, B) = 90/110 > 0.3 -> merged into A
                      [20, 20, 30, 30],  # C 0.8: disjoint
                      [6, 0, 16, 10]],  # D 0.7: IoU(A, D) = 0.25; IoU(B, D) = 0.33 but B is gone
                     np.float32)
    kps = np.array([[[0, 0]], [[5, 5]], [[25, 25]], [[11, 5]]], np.float32)
    scores = np.array([0.9, 0.6, 0.8, 0.7], np.float32)
    b, k, s = weighted_nms(boxes, kps, scores, iou_threshold=0.3)
    np.testing.assert_allclose(s, [0.9, 0.8, 0.7])
    np.testing.assert_allclose(b[0], [0.4, 0.0, 10.4, 10.0], atol=1e-5)  # (0.9 A + 0.6 B) / 1.5
    np.testing.assert_allclose(k[0, 0], [2.0, 2.0], atol=1e-5)
    np.testing.assert_allclose(b[1:], boxes[[2, 3]])
    np.testing.assert_allclose(k[1:], kps[[2, 3]])


@core
def test_weighted_nms_of_nothing_is_nothing():
    b, k, s = weighted_nms(np.zeros((0, 4)), np.zeros((0, 4, 2)), np.zeros(0))
    assert b.shape == (0, 4) and k.shape == (0, 4, 2) and s.shape == (0,)


# -- ROI from the alignment points --------------------------------------------------------------
@core
@pytest.mark.parametrize("scale_point, side, rotation_deg", [
    ((100.0, 120.0), 200.0, 0.0),  # upright: 80 px above the hip centre -> side 2*80*1.25
    ((150.0, 200.0), 125.0, -90.0),  # lying, head to the right: turned clockwise by 90 degrees
    ((60.0, 160.0), 2 * 40 * math.sqrt(2) * 1.25, 45.0),  # leaning left: counter-clockwise 45
])
def test_roi_from_alignment_is_centred_on_the_hip_with_side_and_rotation(scale_point, side,
                                                                          rotation_deg):
    roi = roi_from_alignment((100.0, 200.0), scale_point)
    assert (roi.cx, roi.cy) == (100.0, 200.0)
    assert roi.width == pytest.approx(side) and roi.height == pytest.approx(side)
    assert math.degrees(roi.rotation) == pytest.approx(rotation_deg)


@core
@pytest.mark.parametrize("scale_point", [(100, 120), (150, 200), (60, 160), (10, 260), (130, 250)])
def test_roi_from_alignment_crop_shows_the_scale_point_straight_above_the_hip(scale_point):
    roi = roi_from_alignment((100.0, 200.0), scale_point)
    m = roi_to_crop_matrix(roi, 256, 256)
    hip, top = apply_affine(m, np.array([(100.0, 200.0), scale_point]))
    np.testing.assert_allclose(hip, [128, 128], atol=1e-9)
    np.testing.assert_allclose(top, [128, 128 - 256 / 2.5], atol=1e-9)  # 1/1.25 of the half side


@core
def test_normalize_radians_wraps_to_minus_pi_pi():
    assert normalize_radians(3 * math.pi / 2) == pytest.approx(-math.pi / 2)
    assert normalize_radians(-3 * math.pi / 2) == pytest.approx(math.pi / 2)
    assert normalize_radians(0.25) == pytest.approx(0.25)


# -- landmark decoding ---------------------------------------------------------------------------
@core
def test_refine_from_heatmap_moves_a_landmark_to_a_confident_peak_only():
    hm = np.full((64, 64, 3), -40.0, np.float32)
    hm[20, 30, 0] = 10.0  # confident peak for landmark 0
    hm[20, 30, 1] = -1.0  # peak below 0.5 for landmark 1
    xy = np.array([[31.5 / 64, 21.2 / 64], [31.5 / 64, 21.2 / 64], [1.2, 0.5]])  # 2: outside
    out = refine_from_heatmap(xy, hm)
    # MediaPipe's convention: a cell's position is its index over the heatmap size.
    np.testing.assert_allclose(out[0], [30 / 64, 20 / 64], atol=1e-9)
    np.testing.assert_allclose(out[1:], xy[1:])


@core
def test_decode_landmarks_maps_crop_pixels_to_frame_and_applies_sigmoid():
    roi = Roi.square(500, 300, 512)  # 2 frame px per crop px
    raw = np.zeros((39, 5), np.float32)
    raw[:, :3] = [128, 64, 10]
    raw[0, 3:] = [0.0, 2.0]
    out = decode_landmarks(raw.reshape(1, 195), invert_affine(roi_to_crop_matrix(roi, 256, 256)),
                           (256, 256))
    np.testing.assert_allclose(out[0], [500, 172, 20, 0.5, 1 / (1 + math.exp(-2))], rtol=1e-6)


# -- the card with null backends (no model files) -------------------------------------------------
def _null_card(landmarks: np.ndarray, presence: float, det_raw=None, det_logits=None) -> BlazePose:
    lm = NullBackend(inputs=[TensorSpec("input_1", (1, 256, 256, 3), np.float32)],
                     outputs={"Identity": landmarks.reshape(1, 195).astype(np.float32),
                              "Identity_1": np.array([[presence]], np.float32)})
    raw = np.zeros((1, 2254, 12), np.float32) if det_raw is None else det_raw
    logits = np.full((1, 2254, 1), -10.0, np.float32) if det_logits is None else det_logits
    det = NullBackend(inputs=[TensorSpec("input_1", (1, 224, 224, 3), np.float32)],
                      outputs={"Identity": raw, "Identity_1": logits})
    return BlazePose(lm, detector=det, name="blazepose-test")


def _landmarks_spanning_the_crop() -> np.ndarray:
    raw = np.zeros((39, 5), np.float32)
    raw[:, :2] = 128
    raw[:, 3:] = 5.0
    raw[34, :2] = [128, 128 - 256 / 2.5]  # alignment circle radius = half side / 1.25
    return raw


@core
def test_next_roi_of_a_pose_whose_alignment_spans_the_crop_is_the_same_roi():
    card = _null_card(_landmarks_spanning_the_crop(), presence=0.99)
    roi = Roi.square(300, 200, 400, rotation=0.3)
    est = card.estimate(np.zeros((480, 640, 3), np.uint8), roi)
    assert est.score == pytest.approx(0.99)
    assert est.native.shape == (39, 5) and est.keypoints.shape == (17, 2)
    nxt = card.next_roi(est, (640, 480))
    assert (nxt.cx, nxt.cy, nxt.width, nxt.rotation) == pytest.approx((300, 200, 400, 0.3))


@core
def test_next_roi_is_none_when_presence_is_below_the_threshold():
    card = _null_card(_landmarks_spanning_the_crop(), presence=0.3)
    est = card.estimate(np.zeros((480, 640, 3), np.uint8), Roi.square(300, 200, 400))
    assert card.next_roi(est, (640, 480)) is None
    bare = Estimate(np.zeros((17, 2)), np.ones(17), Roi.square(1, 1, 2), score=0.9)
    assert card.next_roi(bare, (640, 480)) is None


@core
def test_initial_roi_undoes_the_detector_letterbox():
    # Frame 640x480 -> a 640 square with 80 px bars above and below -> 224 px.
    raw = np.zeros((1, 2254, 12), np.float32)
    logits = np.full((1, 2254, 1), -10.0, np.float32)
    a = ssd_anchors()[0, :2]  # (1/56, 1/56)
    raw[0, 0, 4:8] = (np.array([0.5, 0.5, 0.5, 0.25]) - np.tile(a, 2)) * 224  # kp0, kp1
    logits[0, 0] = 5.0
    card = _null_card(_landmarks_spanning_the_crop(), 0.99, raw, logits)
    roi, timings = card.initial_roi(np.zeros((480, 640, 3), np.uint8))
    assert "detect" in timings
    # kp0 -> (320, 240); kp1 is a quarter of 640 px above it -> side 2 * 160 * 1.25.
    assert (roi.cx, roi.cy, roi.width, roi.rotation) == pytest.approx((320, 240, 400, 0), abs=1e-3)
    card_nobody = _null_card(_landmarks_spanning_the_crop(), 0.99)
    assert card_nobody.initial_roi(np.zeros((480, 640, 3), np.uint8))[0] is None


@core
def test_a_movenet_file_is_refused_as_blazepose_landmarks_with_the_expected_input():
    movenet_like = NullBackend(inputs=[TensorSpec("input", (1, 192, 192, 3), np.uint8)],
                               outputs={"out": np.zeros((1, 1, 17, 3), np.float32)})
    det = NullBackend(inputs=[TensorSpec("input_1", (1, 224, 224, 3), np.float32)],
                      outputs={"Identity": np.zeros((1, 2254, 12), np.float32),
                               "Identity_1": np.zeros((1, 2254, 1), np.float32)})
    with pytest.raises(ModelLoadError) as exc:
        BlazePose(movenet_like, detector=det)
    assert str(exc.value) == (
        "'<null>' inputs input [1,192,192,3] uint8 do not fit the BlazePose landmark: expected "
        "one [1,256,256,3] float32 image input")


# -- real models and images -----------------------------------------------------------------------
#: blazepose-full on pose.jpg through detector -> landmarks (COCO-17, frame px), recorded from
#: this implementation after checking them on the image and against MoveNet Thunder
#: (mean 10.4 px apart on the 13 shared joints; one elbow and one wrist differ most, 22 and 24 px,
#: along the arm; hips, knees, ankles within 8 px).
POSE_JPG_GOLDEN = np.array([
    [461.8, 288.2], [470.2, 278.0], [462.2, 278.9], [491.5, 278.1], [473.3, 278.9],
    [544.7, 320.0], [451.0, 325.2], [622.8, 323.0], [374.1, 314.9], [694.6, 314.8],
    [301.2, 307.2], [520.9, 470.8], [464.0, 464.7], [612.1, 547.2], [355.3, 490.2],
    [703.7, 616.6], [349.7, 608.1]])
#: Golden tolerance in frame px (runtime/XNNPACK versions move outputs by a fraction of this).
GOLDEN_TOL_PX = 4.0
#: The person in pose.jpg spans about this box (hand-read: fingertips to feet, hair to soles).
POSE_JPG_PERSON = (245, 235, 755, 635)
POSE_JPG_HEAD = (465, 270)


@pytest.fixture(scope="module")
def blazepose_full():
    from edgepose.models import load_model

    with load_model("blazepose-full", num_threads=2) as card:
        yield card


@backend
def test_detector_finds_one_person_on_pose_jpg_with_a_roi_around_them(blazepose_full, pose_jpg):
    boxes, kps, scores = blazepose_full.detect(pose_jpg)
    assert len(scores) == 1 and scores[0] > 0.9
    x0, y0, x1, y1 = boxes[0]  # the detector's box is the head's
    assert x0 < POSE_JPG_HEAD[0] < x1 and y0 < POSE_JPG_HEAD[1] < y1
    roi, timings = blazepose_full.initial_roi(pose_jpg)
    assert timings["detect"] > 0
    rx0, ry0, rx1, ry1 = roi.box()
    px0, py0, px1, py1 = POSE_JPG_PERSON
    assert rx0 < px0 and ry0 < py0 and rx1 > px1 and ry1 > py1
    assert roi.width < 1.5 * max(px1 - px0, py1 - py0)
    assert abs(roi.rotation) < math.radians(10)


@backend
def test_detector_finds_the_three_people_on_three_people_jpg(blazepose_full, assets):
    import cv2

    bgr = cv2.imread(str(assets / "data" / "tfjs_testdata" / "three_people.jpg"))
    _, _, scores = blazepose_full.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    assert len(scores) == 3


@backend
def test_blazepose_full_golden_keypoints_on_pose_jpg(blazepose_full, pose_jpg):
    roi, _ = blazepose_full.initial_roi(pose_jpg)
    est = blazepose_full.estimate(pose_jpg, roi)
    assert est.score > 0.9 and (est.scores > 0.9).all()
    err = np.linalg.norm(est.keypoints - POSE_JPG_GOLDEN, axis=1)
    assert err.max() < GOLDEN_TOL_PX, f"max golden error {err.max():.2f} px at joint {err.argmax()}"
    assert est.native.shape == (39, 5)
    assert set(est.timings_ms) == {"preprocess", "infer", "decode"}


@backend
@pytest.mark.parametrize("name", ["blazepose-lite", "blazepose-heavy"])
def test_blazepose_lite_and_heavy_agree_with_the_full_golden_on_pose_jpg(name, pose_jpg):
    from edgepose.models import load_model

    with load_model(name, num_threads=2) as card:
        roi, _ = card.initial_roi(pose_jpg)
        est = card.estimate(pose_jpg, roi)
    assert est.score > 0.9
    assert np.linalg.norm(est.keypoints - POSE_JPG_GOLDEN, axis=1).max() < 15.0  # measured 8.3


@backend
def test_blazepose_full_finds_the_same_pose_on_pose_jpg_rotated_90_degrees(blazepose_full,
                                                                            pose_jpg):
    h = pose_jpg.shape[0]
    rotated = np.ascontiguousarray(np.rot90(pose_jpg, k=-1))  # clockwise: (x, y) -> (h - y, x)
    roi, _ = blazepose_full.initial_roi(rotated)
    assert math.degrees(roi.rotation) == pytest.approx(-90, abs=10)
    k = blazepose_full.estimate(rotated, roi).keypoints
    back = np.stack([k[:, 1], h - k[:, 0]], axis=1)
    assert np.linalg.norm(back - POSE_JPG_GOLDEN, axis=1).max() < 12.0


@backend
def test_tracked_blazepose_full_on_pose_squats_matches_the_reference_within_12_px(
        blazepose_full, assets):
    """Detector on frame 0, then landmarks-to-ROI tracking; mean error on the 17 COCO joints."""
    import cv2

    from edgepose.types import to_coco17

    folder = assets / "data" / "tfjs_testdata"
    ref = np.array(json.loads((folder / "pose_squats.full.json").read_text()))  # (65, 33, 3)
    cap = cv2.VideoCapture(str(folder / "pose_squats.mp4"))
    roi, detector_runs, errors = None, 0, []
    try:
        for i in range(len(ref)):
            ok, bgr = cap.read()
            assert ok, f"cannot read frame {i}"
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            assert frame.shape == (1280, 720, 3)  # portrait, read upright
            if roi is None:
                roi, _ = blazepose_full.initial_roi(frame)
                detector_runs += 1
            est = blazepose_full.estimate(frame, roi)
            target, _ = to_coco17(ref[i, :, :2], "blazepose33")
            errors.append(np.linalg.norm(est.keypoints - target, axis=1))
            roi = blazepose_full.next_roi(est, (frame.shape[1], frame.shape[0]))
    finally:
        cap.release()
    errors = np.array(errors)
    assert detector_runs == 1
    assert errors.mean() <= 12.0, f"mean error {errors.mean():.2f} px"  # measured 7.2 px
    assert errors.mean(axis=1).max() < 25.0
