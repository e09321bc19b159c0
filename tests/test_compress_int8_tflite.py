"""Per-layer int8 sensitivity (ORT QDQ), float fallback layers, TFLite export (litert-torch, slow),
and the time-budgeted long distillation with checkpoints."""

import json

import numpy as np
import pytest

from tests.conftest import MODELS

LIGHTNING = MODELS / "movenet" / "movenet_lightning_fp32.onnx"


def _crops(n=4, size=192):
    """Crops from the training pool (data/train_extra), never the evaluation set."""
    from edgepose.compression.data.sources import read_image, scan_media
    from edgepose.models._crop import Roi, crop

    items = scan_media(MODELS.parent / "data" / "train_extra" / "gh_ildoonet_tf-pose-estimation")[:n]
    out = []
    for it in items:
        img = read_image(it.path)
        out.append(crop(img, Roi.full_frame(img.shape[1], img.shape[0]), size, size)[0])
    return out


@pytest.mark.backend
def test_proxy_pck_counts_joints_within_a_fifth_of_the_teacher_torso():
    from edgepose.compression.quantize import proxy_pck

    t = np.zeros((1, 17, 3), np.float32)
    t[0, :, 2] = 1.0
    t[0, [5, 6, 11, 12], :2] = [[0.2, 0.4], [0.2, 0.6], [0.7, 0.4], [0.7, 0.6]]  # torso ~0.52
    p = t.copy()
    assert proxy_pck(p, t) == 100.0
    p[0, 0, :2] += 0.2  # 0.2 > 0.2 x 0.52: one miss in 17
    assert proxy_pck(p, t) == pytest.approx(100 * 16 / 17)
    t[0, 3, 2] = 0.1  # unconfident teacher joints are not counted
    assert proxy_pck(p, t) == pytest.approx(100 * 15 / 16)


@pytest.mark.backend
def test_sensitivity_ranks_single_layer_quantisation_and_picks_float_layers(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgepose.compression.quantize import QuantizeConfig, layer_sensitivity, quantize
    from edgepose.compression.quantize.sensitivity import conv_nodes, predict

    crops = _crops(4)
    teacher = predict(str(LIGHTNING), crops)  # the fp32 model as its own teacher: fp32 proxy PCK = 100
    convs = conv_nodes(str(LIGHTNING))
    assert len(convs) > 40
    rep = layer_sensitivity(LIGHTNING, crops, crops, teacher, QuantizeConfig(num_calibration=4),
                            layers=[convs[0], convs[len(convs) // 2]], steps=(0, 1), gate=-1.0, progress=False)
    assert rep.fp32_proxy_pck == 100.0
    assert [r.err_px for r in rep.rows] == sorted((r.err_px for r in rep.rows), reverse=True)
    assert {r.node for r in rep.rows} == {convs[0], convs[len(convs) // 2]}
    # a negative gate can never be met: every step is tried and the best kept
    assert [s["k"] for s in rep.exclusion_steps] == [0, 1]
    assert rep.exclude_nodes == max(rep.exclusion_steps, key=lambda s: s["proxy_pck"])["excluded"]
    assert "| float convs |" in rep.to_markdown()
    # the chosen nodes really stay float
    q = quantize(LIGHTNING, tmp_path / "q.onnx", QuantizeConfig(num_calibration=4, exclude_nodes=(convs[0],)),
                 calibration=crops)
    import onnx

    m = onnx.load(q.path)
    node = next(n for n in m.graph.node if n.name == convs[0])
    producers = {o: n.op_type for n in m.graph.node for o in n.output}
    assert all(producers.get(i) != "DequantizeLinear" for i in node.input)
    assert json.loads({p.key: p.value for p in m.metadata_props}["edgepose.quantization"])["exclude_nodes"] == [convs[0]]


@pytest.mark.torch
def test_long_kd_trains_checkpoints_and_rebuilds_the_student_from_the_plan(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch_pruning")
    from edgepose.compression.data.labels import LabelSet
    from edgepose.compression.distill.long_kd import LongKDConfig, build_student, train_long_kd
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.prune import PruneConfig, load_plan, prune, save_plan

    import cv2

    crops = _crops(4, 256)
    jpegs = [cv2.imencode(".jpg", c[..., ::-1])[1].reshape(-1) for c in crops]
    offsets = np.concatenate([[0], np.cumsum([len(j) for j in jpegs])]).astype(np.int64)
    rng = np.random.default_rng(0)
    kps = np.concatenate([rng.uniform(0.2, 0.8, (4, 17, 2)), np.ones((4, 17, 1))], -1).astype(np.float32)
    maps = rng.integers(0, 255, (4, 18, 64, 64)).astype(np.uint8)
    labels = LabelSet(np.concatenate(jpegs), offsets, kps, maps, [f"a{i}.jpg#0" for i in range(4)], 256, "mem")
    net = import_movenet(LIGHTNING)
    pres = prune(net, PruneConfig(ratio=0.5))
    save_plan(pres.plan, tmp_path / "prune_plan.json")
    cfg = LongKDConfig(minutes=5, max_steps=2, batch_size=2, ckpt_every=1, warmup=1, val_fraction=0.25)
    summary = train_long_kd(pres.model, net, labels, cfg, tmp_path)
    assert summary["steps"] == 2 and [c["step"] for c in summary["ckpts"]] == [1, 2]
    lines = [r for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "event" not in r]
    assert len(lines) == 2 and {"ref", "feat", "kd_heatmap", "task_offset"} <= set(lines[0])  # + event lines
    _, student = build_student(str(LIGHTNING), load_plan(tmp_path / "prune_plan.json"))
    student.load_state_dict(torch.load(tmp_path / "ckpt_000002.pt")["state_dict"])
    x = torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        for a, b in zip(student.eval()(x), pres.model.eval()(x)):
            assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_tflite_export_fp32_matches_torch_and_int8_runs_with_the_movenet_card(tmp_path):
    """litert-torch is not in the dev extras: slow only."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    from edgepose.compression.export import export_tflite
    from edgepose.compression.importer import import_movenet
    from edgepose.models import load_model

    net = import_movenet(LIGHTNING)
    crops = _crops(4)
    r = export_tflite(net, tmp_path / "l.tflite", check_crops=crops)
    assert r.max_px < 0.5 and not r.int8
    q = export_tflite(net, tmp_path / "l8.tflite", int8=True, calibration=crops, check_crops=crops)
    assert q.int8 and q.mean_px < 8.0
    comp = json.loads(q.metadata["edgepose.compression"])
    assert comp["tflite_input"]["int8"] == "calibrated scale" and comp["tflite_sparse_heads"] == ["regress", "offset"]
    e = export_tflite(net, tmp_path / "e8.tflite", int8=True, calibration=crops, check_crops=crops, exact_input=True)
    assert e.mean_px < 8.0
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(tmp_path / "e8.tflite"))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    first_q = next(o for o in it._get_ops_details() if o["op_name"] == "QUANTIZE")
    scale, zero = tensors[first_q["outputs"][0]]["quantization"]
    assert zero == 0 and scale == pytest.approx(1 / 127.5, rel=1e-4)  # int8 input = pixel - 128
    assert (tmp_path / "l8.tflite").stat().st_size < 0.5 * (tmp_path / "l.tflite").stat().st_size
    with load_model(str(tmp_path / "l8.tflite"), num_threads=1):  # the card is read from the metadata
        pass
    with pytest.raises(ValueError, match="calibration crops"):
        export_tflite(net, tmp_path / "x.tflite", int8=True)


def test_tflite_export_names_a_bad_calibration_method_before_needing_litert():
    from edgepose.compression.export import export_tflite

    with pytest.raises(ValueError, match=r"calibration_method 'kl' is not one of histogram, minmax"):
        export_tflite(object(), "unused.tflite", int8=True, calibration=[np.zeros((192, 192, 3), np.uint8)],
                      calibration_method="kl")


@pytest.mark.torch
def test_sparse_heads_decode_equals_the_dense_decoder_on_real_crops():
    """The LiteRT graph reads the regression / offset heads only at the decoded cells (their 1x1
    convolution chains run on those few feature vectors): the keypoints and scores must equal
    the dense model's decoder, and the chains must be the heads' real trailing convolutions."""
    import torch

    from edgepose.compression.export.tflite_export import _body_returning, _sparse_head_chains, _TFLiteDeploy
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.importer.movenet import decode_heads_torch

    net = import_movenet(LIGHTNING).eval()
    found = _sparse_head_chains(net.body)
    assert sorted(found) == [2, 3]  # regress, offset; heatmap / centre need their whole maps
    for _, chain, dropped in found.values():
        assert [k for k, _ in chain.kinds] == ["conv", "Relu", "conv"] and len(dropped) == 3
    stems = _body_returning(net.body, {i: c[0] for i, c in found.items()}, {t for c in found.values() for t in c[2]})
    assert len(stems.steps) == len(net.body.steps) - 6
    sparse = _TFLiteDeploy(net, stems, {i: c[1] for i, c in found.items()}).eval()
    x = torch.from_numpy(np.stack(_crops(4)))
    with torch.no_grad():
        got = sparse(x)[:, 0]
        heads = net(net.normalise(x))
        d = net.decode
        want = decode_heads_torch(*heads, torch.tensor(d.center_weight), d.dist_offset, torch.tensor(d.out_scale))
        dense = _TFLiteDeploy(net, net.body).eval()(x)[:, 0]
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert torch.allclose(dense, want, atol=1e-4)
    assert float(want[..., 2].max()) > 0.3  # real people: confident joints, not an all-zero map


def test_qat_config_and_export_arguments_are_checked_before_needing_litert():
    from edgepose.compression.export import export_tflite
    from edgepose.compression.quantize.qat import QATConfig

    with pytest.raises(ValueError, match="QATConfig.steps must be an int >= 0, got -1"):
        QATConfig(steps=-1)
    with pytest.raises(ValueError, match="QATConfig.lr must be > 0"):
        QATConfig(lr=0.0)
    with pytest.raises(ValueError, match=r"QATConfig.loss must be one of \('logits', 'probabilities'\), got 'l2'"):
        QATConfig(loss="l2")
    crop = [np.zeros((192, 192, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"needs int8=True and qat_draw .* qat_draw=None"):
        export_tflite(object(), "unused.tflite", int8=True, calibration=crop, qat=QATConfig(steps=5))
    with pytest.raises(ValueError, match="int8=False"):
        export_tflite(object(), "unused.tflite", qat=QATConfig(steps=0))


@pytest.mark.slow
def test_tflite_int8_qat_fine_tunes_toward_the_float_outputs_and_exports(tmp_path):
    """A few QAT steps on training crops: the loss is finite, the file runs with the MoveNet card
    and its keypoints stay near the float model's (the sparse-head build)."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    import json as _json

    from edgepose.compression.export import export_tflite
    from edgepose.compression.importer import import_movenet
    from edgepose.compression.quantize.qat import QATConfig
    from edgepose.models import load_model

    net = import_movenet(LIGHTNING)
    crops = _crops(6)

    def draw(rng, n):
        return np.stack([crops[int(i)] for i in rng.integers(0, len(crops), n)])

    r = export_tflite(net, tmp_path / "q.tflite", int8=True, calibration=crops[:4], check_crops=crops[4:],
                      qat=QATConfig(steps=3, batch=2), qat_draw=draw)
    comp = _json.loads(r.metadata["edgepose.compression"])
    assert comp["tflite_quantization"]["method"] == "litert-torch-pt2e-qat"
    assert comp["tflite_sparse_heads"] == ["regress", "offset"]
    assert np.isfinite(comp["tflite_qat"]["loss_last"]) and comp["tflite_qat"]["steps"] == 3
    assert r.int8 and r.mean_px < 8.0
    with load_model(str(tmp_path / "q.tflite"), num_threads=1):
        pass


@pytest.mark.torch
def test_exact_input_shift_centres_movenet_normalisation_on_pixel_128_and_refuses_other_ones():
    """MoveNet's x = p / 127.5 - 1 moves half a level to (p - 128) / 127.5, so that int8 input at
    scale 1/127.5 is the pixel minus 128 exactly; a per-channel or off-centre normalisation has
    no such offset."""
    import torch

    from edgepose.compression.quantize.tflite_int8 import _exact_input_shift
    from edgepose.compression.importer import import_movenet

    net = import_movenet(LIGHTNING)
    shift = _exact_input_shift(net)
    s = float(net.scale.flatten()[0])
    assert shift == pytest.approx(-128 * s) and abs(shift - float(net.shift.flatten()[0])) <= 0.5 * s + 1e-9
    p = torch.arange(256, dtype=torch.float32)
    assert torch.equal(torch.round((p * s + shift) / s), p - 128)  # on the int8 grid, in range
    net.shift.fill_(0.0)  # x = p / 127.5: centred on 0, not on the middle of the pixel range
    assert _exact_input_shift(net) is None
    net.shift.fill_(-1.0)
    net.scale[0, 1] = 2 * s  # per-channel scales
    assert _exact_input_shift(net) is None
