"""MoveNet cards on the real model files: golden keypoints on a real image, pure decoder."""

import numpy as np
import pytest

from edgepose.estimator import PoseEstimator
from edgepose.models import load_model
from edgepose.models._crop import Roi, roi_to_crop_matrix, invert_affine
from edgepose.models.movenet import decode_movenet

# Keypoints (COCO-17, frame px) on tfjs_testdata/pose.jpg in image mode (full frame + refined crop),
# recorded from each model and cross-checked: the three models agree within 11 px on every joint.
GOLDEN = {
    "movenet-lightning-int8": [[461, 287], [469, 269], [457, 272], [501, 274], [476, 274], [539, 317],
                               [452, 324], [621, 319], [367, 317], [695, 314], [297, 307], [511, 468],
                               [466, 458], [596, 543], [355, 486], [703, 615], [350, 618]],
    "movenet-lightning-fp32": [[460, 286], [470, 276], [460, 276], [500, 277], [481, 276], [537, 316],
                               [453, 323], [620, 320], [377, 314], [696, 312], [300, 307], [513, 463],
                               [468, 458], [604, 546], [355, 491], [704, 615], [347, 615]],
    "movenet-thunder-fp32": [[458, 284], [467, 274], [460, 273], [501, 278], [483, 276], [545, 313],
                             [448, 322], [624, 320], [374, 315], [697, 311], [302, 306], [519, 464],
                             [467, 462], [607, 551], [355, 490], [707, 618], [347, 613]],
}
#: Pixels; covers rounding and thread-count-dependent float summation order.
TOLERANCE_PX = 3.0


@pytest.mark.backend
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_movenet_card_reproduces_golden_keypoints_on_a_real_image(name, pose_jpg):
    with PoseEstimator(name, num_threads=2) as est:
        result = est.detect(pose_jpg)
    assert len(result.poses) == 1
    err = np.linalg.norm(result.pose.keypoints - np.array(GOLDEN[name]), axis=1)
    assert err.max() <= TOLERANCE_PX, f"max error {err.max():.1f} px at joint {err.argmax()}"
    assert result.pose.scores.min() > 0.4
    assert {"preprocess", "infer", "decode", "total"} <= set(result.timings_ms)


@pytest.mark.backend
def test_all_three_movenet_files_agree_on_the_same_person(pose_jpg):
    g = {k: np.array(v, float) for k, v in GOLDEN.items()}
    assert np.abs(g["movenet-lightning-int8"] - g["movenet-thunder-fp32"]).max() <= 12
    assert np.abs(g["movenet-lightning-fp32"] - g["movenet-thunder-fp32"]).max() <= 12


@pytest.mark.backend
def test_movenet_tflite_takes_uint8_and_onnx_takes_int32():
    with load_model("movenet-lightning-int8") as m8, load_model("movenet-lightning-fp32") as m32:
        assert m8.backend.inputs[0].dtype == np.uint8
        assert m32.backend.inputs[0].dtype == np.int32
        assert m8.input_size == m32.input_size == (192, 192)
    with load_model("movenet-thunder-fp32") as th:
        assert th.input_size == (256, 256)


@pytest.mark.core
def test_decode_movenet_maps_normalised_crop_coordinates_to_frame_pixels():
    roi = Roi.square(300.0, 200.0, 100.0)  # crop covers x 250..350, y 150..250
    out = np.zeros((1, 1, 17, 3), np.float32)
    out[0, 0, :, 0] = 0.25  # y
    out[0, 0, :, 1] = 0.75  # x
    out[0, 0, :, 2] = 0.9
    kps, scores = decode_movenet(out, invert_affine(roi_to_crop_matrix(roi, 192, 192)), (192, 192))
    np.testing.assert_allclose(kps, np.tile([[325.0, 175.0]], (17, 1)), atol=1e-3)
    np.testing.assert_allclose(scores, 0.9)
