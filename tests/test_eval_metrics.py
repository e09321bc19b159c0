"""PCK and OKS arithmetic on hand-made poses with known answers."""

import math

import numpy as np
import pytest

from edgepose.eval.metrics import Pck, bbox_size, oks, oks_ap, pck, pck_bbox, pck_torso, torso_size
from edgepose.types import SHARED13, Keypoint as K

pytestmark = pytest.mark.core


def person(points: dict[int, tuple[float, float]]) -> np.ndarray:
    """(17, 3) ground truth with only ``points`` labelled."""
    gt = np.zeros((17, 3))
    for k, (x, y) in points.items():
        gt[int(k)] = [x, y, 2]
    return gt


def full_person(offset=(0.0, 0.0)) -> np.ndarray:
    """All 17 joints labelled on a grid; torso diagonals 50 px each (30-40-50 triangles)."""
    gt = np.zeros((17, 3))
    gt[:, 0] = np.arange(17) * 3.0 + offset[0]
    gt[:, 1] = np.arange(17) * 2.0 + offset[1]
    gt[:, 2] = 2
    gt[K.LEFT_SHOULDER, :2] = [0, 0]
    gt[K.RIGHT_HIP, :2] = [30, 40]
    gt[K.RIGHT_SHOULDER, :2] = [30, 0]
    gt[K.LEFT_HIP, :2] = [0, 40]
    gt[[K.LEFT_SHOULDER, K.RIGHT_HIP, K.RIGHT_SHOULDER, K.LEFT_HIP], :2] += offset
    return gt


def test_torso_is_the_mean_of_the_two_shoulder_to_opposite_hip_diagonals():
    gt = person({K.LEFT_SHOULDER: (0, 0), K.RIGHT_HIP: (3, 4), K.RIGHT_SHOULDER: (10, 0),
                 K.LEFT_HIP: (10, 10)})
    assert torso_size(gt) == pytest.approx(7.5)  # (5 + 10) / 2


def test_torso_uses_the_one_available_diagonal_and_is_nan_with_neither():
    one = person({K.LEFT_SHOULDER: (0, 0), K.RIGHT_HIP: (6, 8), K.RIGHT_SHOULDER: (50, 50)})
    none = person({K.LEFT_SHOULDER: (0, 0), K.LEFT_HIP: (0, 10), K.NOSE: (1, 1)})
    sizes = torso_size(np.stack([one, none]))
    assert sizes[0] == pytest.approx(10.0)
    assert math.isnan(sizes[1])


def test_pck_counts_errors_strictly_below_the_threshold():
    gt = full_person()  # torso 50 -> threshold 0.2 * 50 = 10 px
    pred = gt[:, :2].copy()
    pred[K.NOSE, 0] += 9.99  # hit
    pred[K.LEFT_WRIST, 1] += 10.0  # exactly the threshold: miss
    pred[K.RIGHT_ANKLE] += [6.0, 8.0]  # 10 px: miss
    result = pck_torso(pred[None], gt[None])
    assert (result.hits, result.total, result.people) == (11, 13, 1)
    assert result.value == pytest.approx(100 * 11 / 13)


def test_pck_scores_only_the_13_shared_joints_and_only_labelled_ones():
    gt = full_person()
    gt[K.LEFT_KNEE, 2] = 0  # unlabelled: neither hit nor miss
    pred = gt[:, :2].copy()
    pred[[K.LEFT_EYE, K.RIGHT_EYE, K.LEFT_EAR, K.RIGHT_EAR]] += 1000.0  # not among the 13
    pred[K.LEFT_KNEE] += 1000.0
    result = pck_torso(pred[None], gt[None])
    assert (result.hits, result.total) == (12, 12)


def test_pck_pools_joints_over_people_rather_than_averaging_people():
    a, b = full_person(), full_person()
    b[[K.NOSE, K.LEFT_ELBOW, K.RIGHT_ELBOW, K.LEFT_WRIST, K.RIGHT_WRIST, K.LEFT_ANKLE,
       K.RIGHT_ANKLE], 2] = 0  # b has 6 labelled joints
    pred = np.stack([a[:, :2], b[:, :2] + 100.0])  # a all right, b all wrong
    result = pck_torso(pred, np.stack([a, b]))
    assert (result.hits, result.total) == (13, 19)
    assert result.value == pytest.approx(100 * 13 / 19)  # not (100 + 0) / 2


def test_people_without_a_torso_are_left_out_of_pck_torso_but_not_pck_bbox():
    with_torso = full_person()
    no_torso = full_person()
    no_torso[[K.RIGHT_HIP, K.LEFT_HIP], 2] = 0
    gts = np.stack([with_torso, no_torso])
    pred = gts[:, :, :2].copy()
    boxes = np.array([[0, 0, 60, 100], [0, 0, 60, 100]])
    assert pck_torso(pred, gts) == Pck(13, 13, 1)
    assert pck_bbox(pred, gts, boxes) == Pck(24, 24, 2)


def test_pck_bbox_threshold_is_a_tenth_of_the_longer_box_side():
    gt = full_person()
    pred = gt[:, :2].copy()
    pred[K.NOSE, 0] += 9.9  # < 0.1 * 100
    pred[K.LEFT_HIP, 0] += 10.1  # > 10
    box = np.array([[10, 20, 50, 120]])  # w 40, h 100
    assert bbox_size(box)[0] == 100
    assert pck_bbox(pred[None], gt[None], box) == Pck(12, 13, 1)


def test_pck_rejects_mismatched_lengths_naming_them():
    with pytest.raises(ValueError, match=r"pred \(2\), gt \(1\) and norm \(1\)"):
        pck(np.zeros((2, 17, 2)), np.zeros((1, 17, 3)), np.ones(1), 0.2)


def test_pck_of_nothing_is_nan():
    assert math.isnan(Pck(0, 0, 0).value)


def test_oks_is_one_for_a_perfect_pose_and_follows_the_coco_formula():
    gt = person({K.LEFT_HIP: (100, 100)})
    assert oks(gt[:, :2], gt, area=400.0) == pytest.approx(1.0)
    pred = gt[:, :2].copy()
    pred[K.LEFT_HIP] += [3.0, 4.0]  # d^2 = 25
    sigma = 0.107  # COCO sigma of the hips
    expected = math.exp(-25.0 / (2 * 400.0 * (2 * sigma) ** 2))
    assert oks(pred, gt, area=400.0) == pytest.approx(expected, rel=1e-6)


def _two_people():
    gts = np.stack([full_person((200, 200)), full_person((500, 200))])
    return gts, np.array([5000.0, 5000.0]), np.array([1, 1])


def test_oks_ap_is_100_for_perfect_predictions():
    pytest.importorskip("pycocotools")
    gts, areas, ids = _two_people()
    ap = oks_ap(gts[:, :, :2], np.array([0.9, 0.8]), gts, areas, ids)
    assert ap["AP"] == pytest.approx(100.0)
    assert ap["AP50"] == pytest.approx(100.0)


def test_oks_ap_with_one_right_and_one_wrong_person_depends_on_ranking():
    pytest.importorskip("pycocotools")
    gts, areas, ids = _two_people()
    pred = gts[:, :, :2].copy()
    pred[1] += 300.0  # second person far off: OKS 0
    # Right one ranked first: precision 1 up to recall 0.5 -> 51 of COCO's 101 recall points.
    good_first = oks_ap(pred, np.array([0.9, 0.1]), gts, areas, ids)
    assert good_first["AP"] == pytest.approx(100 * 51 / 101, abs=1e-6)
    # Wrong one ranked first: precision 0.5 at recall 0.5.
    bad_first = oks_ap(pred, np.array([0.1, 0.9]), gts, areas, ids)
    assert bad_first["AP"] == pytest.approx(100 * 0.5 * 51 / 101, abs=1e-6)


def test_shared_joints_are_the_13_of_the_protocol():
    assert len(SHARED13) == 13
    assert K.LEFT_EYE not in SHARED13 and K.NOSE in SHARED13
