"""Evaluation set loaders on the real annotation files: counts, joint maps, boxes, errors."""

import numpy as np
import pytest

from edgepose.errors import ConfigError, UnknownNameError
from edgepose.eval.datasets import (
    DATA_ENV, HARD, list_datasets, load_dataset, map_keypoints, resolve_data_root, resolve_names,
)
from edgepose.types import SHARED13, Keypoint as K

pytestmark = pytest.mark.core

#: People with >= 6 of the 13 shared joints labelled, crowd skipped ($EDGEPOSE_ASSETS/ASSETS.md: 161 in all).
EXPECTED_PEOPLE = {
    "coco_mini_val2017": 48, "coco_mini_train2017": 51, "coco": 12, "ochuman": 5, "crowdpose": 3,
    "exlpose": 6, "aic": 8, "mhp": 2, "mpii": 5, "posetrack18": 14, "jhmdb": 3, "h36m": 4,
}


@pytest.fixture(scope="module")
def data_root(assets):
    return assets / "data"


@pytest.fixture(scope="module")
def everyone(data_root):
    return {name: load_dataset(name, data_root) for name in list_datasets()}


def test_every_set_of_the_protocol_is_registered_and_nothing_else():
    assert list_datasets() == list(EXPECTED_PEOPLE)
    assert set(HARD) == {"exlpose", "ochuman", "posetrack18"}


def test_each_set_yields_the_expected_people_and_161_in_all(everyone):
    assert {n: len(p) for n, p in everyone.items()} == EXPECTED_PEOPLE
    assert sum(len(p) for p in everyone.values()) == 161


def test_every_person_has_six_labelled_shared_joints_and_an_existing_image(everyone):
    for name, people in everyone.items():
        for p in people:
            assert p.dataset == name
            assert p.num_labelled >= 6
            assert p.image_path.is_file(), p.image_path
            assert p.keypoints.shape == (17, 3)
            assert p.area > 0


def test_crop_is_square_and_1_25_times_the_longer_box_side(everyone):
    p = everyone["coco"][0]
    x0, y0, x1, y1 = p.box
    assert p.roi.width == p.roi.height == pytest.approx(1.25 * max(x1 - x0, y1 - y0))
    assert (p.roi.cx, p.roi.cy) == pytest.approx(((x0 + x1) / 2, (y0 + y1) / 2))


def test_mpii_crop_is_the_given_centre_and_scale_and_its_box_the_visible_joints(everyone):
    p = everyone["mpii"][0]  # 005808361.jpg: centre (966, 340), scale 4.718488
    assert (p.roi.cx, p.roi.cy, p.roi.width) == pytest.approx((966.0, 340.0, 4.718488 * 200))
    vis = p.keypoints[p.keypoints[:, 2] > 0, :2]
    assert p.box[0] <= vis[:, 0].min() and p.box[2] >= vis[:, 0].max()


def test_h36m_joints_1_to_3_are_the_right_leg_despite_their_names(everyone):
    # With the file's literal names the hips would sit on the opposite side to the shoulders.
    for p in everyone["h36m"]:
        k = p.keypoints
        shoulders = np.sign(k[K.RIGHT_SHOULDER, 0] - k[K.LEFT_SHOULDER, 0])
        hips = np.sign(k[K.RIGHT_HIP, 0] - k[K.LEFT_HIP, 0])
        assert shoulders == hips, p.image_path.name


def test_formats_without_a_nose_leave_it_unlabelled(everyone):
    for name in ("crowdpose", "exlpose", "aic", "mhp", "mpii", "jhmdb", "h36m"):
        assert all(p.keypoints[K.NOSE, 2] == 0 for p in everyone[name]), name


def test_posetrack_head_bottom_and_top_are_not_taken_for_eyes(everyone):
    for p in everyone["posetrack18"]:
        assert p.keypoints[K.LEFT_EYE, 2] == 0 and p.keypoints[K.RIGHT_EYE, 2] == 0


def test_map_keypoints_uses_the_aic_table_and_clears_unlabelled_positions():
    raw = np.zeros((14, 3))
    raw[3] = [10, 20, 2]  # AIC left shoulder
    raw[0] = [5, 5, 0]  # AIC right shoulder, unlabelled but with a position
    out = map_keypoints(raw, "aic14")
    assert out[K.LEFT_SHOULDER].tolist() == [10, 20, 2]
    assert out[K.RIGHT_SHOULDER].tolist() == [0, 0, 0]
    assert int((out[list(SHARED13), 2] > 0).sum()) == 1


def test_group_names_expand_and_unknown_names_list_the_choices():
    assert resolve_names("coco_mini,hard") == ["coco_mini_val2017", "coco_mini_train2017",
                                               "ochuman", "exlpose", "posetrack18"]
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'cocoo'; valid choices: aic, coco, "
                                               r"coco_mini, .*Run 'edgepose eval --help'"):
        resolve_names(["cocoo"])


def test_without_a_data_root_the_error_names_the_option_and_the_variable(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"no evaluation data root given: pass --data-root DIR "
                                          r"\(data_root=...\) or set EDGEPOSE_DATA"):
        resolve_data_root(None)


def test_data_root_comes_from_the_environment_and_is_checked(monkeypatch, tmp_path, data_root):
    monkeypatch.setenv(DATA_ENV, str(data_root))
    assert resolve_data_root() == data_root
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"EDGEPOSE_DATA '.*' has no coco_mini/ or mmpose_mini/ "
                                          r"folder; point --data-root"):
        resolve_data_root()
