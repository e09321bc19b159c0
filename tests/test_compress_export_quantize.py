"""Export verifies itself and carries metadata the runtime reads; int8 runs on the real model and the
calibration method really changes the ranges."""

import json

import numpy as np
import pytest

from tests.conftest import MODELS

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from edgepose.compression.export import ExportConfig, export_onnx, write_manifest  # noqa: E402
from edgepose.compression.importer import import_movenet  # noqa: E402
from edgepose.compression.quantize import QuantizeConfig, calibration_ranges, decoder_nodes, quantize  # noqa: E402
from edgepose.models._crop import Roi, crop  # noqa: E402

LIGHTNING = MODELS / "movenet" / "movenet_lightning_fp32.onnx"


def _calibration_crops(n=6):
    """Crops from the training pool (data/train_extra), never the evaluation set."""
    from edgepose.compression.data.sources import read_image, scan_media

    items = scan_media(MODELS.parent / "data" / "train_extra" / "gh_ildoonet_tf-pose-estimation")[:n]
    out = []
    for it in items:
        img = read_image(it.path)
        out.append(crop(img, Roi.full_frame(img.shape[1], img.shape[0]), 192, 192)[0])
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    net = import_movenet(LIGHTNING)
    res = export_onnx(net, out / "lightning.onnx", compression={"prune": {"ratio": 0.0}},
                      check_crops=_calibration_crops(2))
    return res


def test_export_matches_torch_and_embeds_edgepose_metadata(exported):
    from edgepose.backends import open_backend

    assert exported.max_px < 0.01 and exported.max_score < 1e-4
    with open_backend(exported.path) as b:
        meta = b.metadata
        assert b.inputs[0].shape == (1, 192, 192, 3) and b.inputs[0].dtype == np.int32
        assert b.outputs[0].shape == (1, 1, 17, 3)
    assert all(k.startswith("edgepose.") for k in meta)
    assert meta["edgepose.keypoint_format"] == "coco17" and meta["edgepose.decoder"] == "movenet"
    assert json.loads(meta["edgepose.compression"]) == {"prune": {"ratio": 0.0}}
    assert meta["edgepose.source_sha256"].startswith("570d3444")


def test_exported_file_runs_through_the_movenet_card_like_the_original(exported, pose_jpg):
    from edgepose.models import load_model

    roi = Roi.full_frame(pose_jpg.shape[1], pose_jpg.shape[0])
    with load_model(exported.path) as a, load_model(str(LIGHTNING)) as b:
        ea, eb = a.estimate(pose_jpg, roi), b.estimate(pose_jpg, roi)
    assert np.abs(ea.keypoints - eb.keypoints).max() < 0.05


def test_manifest_lists_sha256_of_each_artifact(exported, tmp_path):
    path = write_manifest(tmp_path, [exported.path])
    row = json.loads(path.read_text())["files"][0]
    assert row["sha256"] == exported.sha256 and row["bytes"] > 1_000_000


def test_calibration_methods_really_change_the_ranges(exported):
    crops = _calibration_crops(4)
    _, mm = calibration_ranges(exported.path, crops, QuantizeConfig(calibration="minmax"))
    _, en = calibration_ranges(exported.path, crops, QuantizeConfig(calibration="entropy", num_bins=512))
    changed = [k for k in mm if k in en and not np.allclose(mm[k], en[k], rtol=1e-3)]
    assert len(changed) > len(mm) // 4  # not MinMax's ranges (docs/design.md §6 pitfall)


def test_int8_quantisation_runs_on_the_real_model_and_keeps_the_decoder_float(exported, tmp_path, pose_jpg):
    import onnx

    from edgepose.models import load_model

    res = quantize(exported.path, tmp_path / "int8.onnx", QuantizeConfig(num_calibration=4),
                   calibration=_calibration_crops(4))
    q = onnx.load(res.path)
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "ArgMax"} <= ops
    assert res.excluded and set(res.excluded) <= {n.name for n in q.graph.node}
    assert "ArgMax" in {n.op_type for n in onnx.load(exported.path).graph.node if n.name in decoder_nodes(onnx.load(exported.path))}
    meta = {p.key: p.value for p in q.metadata_props}
    assert json.loads(meta["edgepose.quantization"])["per_channel"] is True
    roi = Roi.full_frame(pose_jpg.shape[1], pose_jpg.shape[0])
    with load_model(res.path) as a, load_model(exported.path) as b:
        ea, eb = a.estimate(pose_jpg, roi), b.estimate(pose_jpg, roi)
    assert np.median(np.hypot(*(ea.keypoints - eb.keypoints).T)) < 15.0  # px on a 1000 px frame


def test_quantize_config_errors_name_the_choices():
    with pytest.raises(ValueError, match="calibration='kl' is not one of minmax, percentile, entropy"):
        QuantizeConfig(calibration="kl")


def test_quantize_without_calibration_crops_says_where_they_come_from(exported, tmp_path):
    with pytest.raises(ValueError, match="needs calibration crops from the training frames"):
        quantize(exported.path, tmp_path / "q.onnx", calibration=[])


def test_export_config_rejects_a_non_positive_tolerance():
    with pytest.raises(ValueError, match="parity_tol_px must be > 0"):
        ExportConfig(parity_tol_px=0)
