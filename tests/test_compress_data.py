"""Training data: media discovery refuses the evaluation set, augmentation moves labels with the
pixels, teacher labels are cached by content hash."""

import numpy as np
import pytest

from tests.conftest import ASSETS, MODELS

from edgepose.compression.data.augment import AugmentConfig, augment  # noqa: E402
from edgepose.compression.data.sources import MediaItem, iter_frames, scan_media  # noqa: E402


def _img(path, w=64, h=48, value=128):
    import cv2

    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))
    return path


def test_scan_media_lists_images_and_videos_recursively(tmp_path):
    (tmp_path / "a").mkdir()
    _img(tmp_path / "a" / "one.jpg")
    _img(tmp_path / "two.png")
    (tmp_path / "notes.txt").write_text("x")
    items = scan_media(tmp_path)
    assert [(i.kind, i.path.endswith(n)) for i, n in zip(items, ["one.jpg", "two.png"])] == \
        [("image", True), ("image", True)]


def test_scan_media_refuses_the_evaluation_set():
    with pytest.raises(ValueError, match="is in the evaluation set .*never train or calibrate on it"):
        scan_media(ASSETS / "data" / "coco_mini")


def test_scan_media_names_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="training data path not found"):
        scan_media(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        scan_media(tmp_path)


def test_video_frames_respect_the_allowed_range_and_stride():
    item = MediaItem(str(ASSETS / "data" / "opencv_doc" / "vtest.avi"), "video", 10, 40)
    idx = [i for i, _ in iter_frames(item, stride=10)]
    assert idx == [10, 20, 30]


def _blob_maps(y, x, ch, size=16):
    maps = np.zeros((18, size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    maps[ch] = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    return maps


def test_identity_augmentation_rescales_image_keypoints_and_maps_together():
    img = np.zeros((64, 64, 3), np.uint8)
    img[20:24, 40:44] = 255
    kps = np.zeros((17, 3), np.float32)
    kps[5] = [22 / 64, 42 / 64, 0.9]
    out, k, m = augment(img, kps, _blob_maps(22 / 4, 42 / 4, 5), AugmentConfig.none(), out_size=48)
    assert out.shape == (48, 48, 3) and m.shape == (18, 12, 12)
    np.testing.assert_allclose(k[5], kps[5], atol=1e-6)  # normalised coords survive a rescale
    y, x = np.unravel_index(np.argmax(m[5]), m[5].shape)
    assert abs(y + 0.5 - k[5, 0] * 12) < 1 and abs(x + 0.5 - k[5, 1] * 12) < 1


def test_flip_mirrors_x_and_swaps_left_and_right():
    cfg = AugmentConfig(scale=(1, 1), rotate_deg=0, translate=0, flip=1.0, colour=0, blur=0, cutout=0)
    img = np.zeros((64, 64, 3), np.uint8)
    kps = np.zeros((17, 3), np.float32)
    kps[5] = [0.25, 0.25, 0.9]  # left shoulder on the image's left
    _, k, m = augment(img, kps, _blob_maps(4, 4, 5), cfg, out_size=64)
    np.testing.assert_allclose(k[6], [0.25, 0.75, 0.9], atol=1e-6)  # now the right shoulder
    assert k[5, 2] == 0
    assert m[5].max() < 1e-6 and np.unravel_index(np.argmax(m[6]), (16, 16)) in {(3, 11), (3, 12)}


def test_random_augmentation_keeps_keypoints_on_the_warped_heatmap_peaks():
    rng = np.random.default_rng(0)
    for _ in range(10):
        kps = np.zeros((17, 3), np.float32)
        kps[0] = [0.5, 0.45, 1.0]
        img = np.zeros((64, 64, 3), np.uint8)
        _, k, m = augment(img, kps, _blob_maps(8, 0.45 * 16, 0), AugmentConfig(), out_size=64, rng=rng)
        j = 0 if k[0, 2] > 0 else 0
        y, x = np.unravel_index(np.argmax(m[j]), m[j].shape)
        assert np.hypot(y + 0.5 - k[j, 0] * 16, x + 0.5 - k[j, 1] * 16) < 1.0


def test_augment_config_rejects_a_probability_above_one():
    with pytest.raises(ValueError, match=r"AugmentConfig.flip is a probability in \[0, 1\], got 2"):
        AugmentConfig(flip=2)


@pytest.mark.torch
def test_teacher_labels_are_computed_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from edgepose.compression.data import labels as L

    src = ASSETS / "data" / "train_extra" / "pypi_scikit-image" / "astronaut.jpg"
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "astronaut.jpg").write_bytes(src.read_bytes())
    cfg = L.LabelConfig(teacher=str(MODELS / "movenet" / "movenet_thunder_fp32.onnx"), min_teacher_score=0.1)
    first = L.label_media(scan_media(folder), cfg, tmp_path / "cache", progress=False)
    assert len(first) == 1 and first.maps.shape == (1, 18, 64, 64) and first.maps.dtype == np.uint8
    assert first.image(0).shape == (256, 256, 3)
    assert first.keypoints[0, :, 2].mean() > 0.3

    def boom(*a, **k):
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr(L, "OnnxTeacher", boom)
    again = L.label_media(scan_media(folder), cfg, tmp_path / "cache", progress=False)
    assert again.path == first.path
    np.testing.assert_array_equal(again.maps, first.maps)
    # Changing the content changes the key.
    (folder / "astronaut.jpg").write_bytes(src.read_bytes() + b"\0")
    assert L.cache_key(scan_media(folder), cfg) not in first.path


def test_label_config_names_a_missing_teacher(tmp_path):
    from edgepose.compression.data.labels import LabelConfig

    with pytest.raises(FileNotFoundError, match="teacher model not found"):
        LabelConfig(teacher=str(tmp_path / "t.onnx"))
