"""``edgepose adapt`` (issue 21): time split, teacher agreement, the gate, the evaluation-frame guard
and one short end-to-end run (label, fine-tune through the Trainer, export, int8, gate, report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepose.cli.main import main


def _video(path: Path, n: int = 40) -> str:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(n):
        w.write(np.full((48, 64, 3), i * 5 % 255, np.uint8))
    w.release()
    return str(path)


def test_split_in_time_holds_out_the_last_frames(tmp_path):
    from edgepose.compression.adapt.scene import split_in_time
    from edgepose.compression.data.sources import MediaItem

    v = _video(tmp_path / "a.avi", 40)
    imgs = []
    for i in range(10):
        p = tmp_path / f"c_{i:04d}.jpg"
        p.write_bytes(b"x")
        imgs.append(MediaItem(str(p), "image"))
    train, gate = split_in_time([MediaItem(v, "video", 0, None), *reversed(imgs)], 0.25)
    assert [(i.start, i.stop) for i in train if i.kind == "video"] == [(0, 30)]
    assert [(i.start, i.stop) for i in gate if i.kind == "video"] == [(30, 40)]
    assert [Path(i.path).name for i in gate if i.kind == "image"] == ["c_0008.jpg", "c_0009.jpg"]  # the latest crops
    train, gate = split_in_time([MediaItem(v, "video", 10, 30)], 0.2)
    assert (train[0].start, train[0].stop, gate[0].start, gate[0].stop) == (10, 26, 26, 30)


def test_split_refuses_too_few_frames(tmp_path):
    from edgepose.compression.adapt.scene import split_in_time
    from edgepose.compression.data.sources import MediaItem
    from edgepose.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 10"):
        split_in_time([MediaItem(_video(tmp_path / "a.avi", 40), "video", 35, None)], 0.2)


def test_agreement_against_the_teacher_and_the_gate():
    from edgepose.compression.adapt.scene import gate_verdict
    from edgepose.compression.adapt.scoring import agreement_of

    rng = np.random.default_rng(0)
    teacher = np.concatenate([rng.uniform(0.2, 0.8, (5, 17, 2)), np.full((5, 17, 1), 0.9)], axis=-1)
    same = agreement_of(teacher.copy(), teacher)
    assert same.pck == 100.0 and same.disagreement == 0.0 and same.crops == 5
    far = teacher.copy()
    far[:, :, :2] += 0.5
    worse = agreement_of(far, teacher)
    assert worse.pck < 20 and worse.disagreement > 80
    assert gate_verdict(same, worse, 0.0) and not gate_verdict(worse, same, 0.0)
    assert not gate_verdict(same, same, 0.0)  # a tie is no measured gain: refused without a margin
    assert gate_verdict(same, same, 0.5)  # accepted when a margin allows it
    assert not gate_verdict(agreement_of(np.zeros((0, 17, 3)), teacher[:0]), same, 0.0)  # nothing scored: refused


def test_adapt_refuses_the_evaluation_frames(assets, capsys):
    vtest = str(assets / "data" / "opencv_doc" / "vtest.avi")
    assert main(["adapt", vtest, "--out", "/tmp/never-written-adapt", "--frames", "0:700"]) == 2
    assert "evaluation frames" in capsys.readouterr().err
    assert main(["adapt", vtest, "--out", "/tmp/never-written-adapt"]) == 2


@pytest.mark.torch
def test_adapt_end_to_end_short(assets, tmp_path, capsys):
    """A 2-step run on 40 frames of pose_1: the report, the candidate's scene metadata, the gate."""
    import onnx

    clip = str(assets / "data" / "tfjs_testdata" / "pose_1.mp4")
    out = tmp_path / "adapt"
    rc = main(["adapt", clip, "--frames", "0:40", "--out", str(out), "--steps", "2", "--batch-size", "4",
               "--scene", "pose_1_test", "--cache", str(tmp_path / "cache"), "--threads", "2"])
    assert rc == 3  # 8 gate frames of one person: fewer crops than the gate's evidence minimum
    rep = json.loads((out / "adapt_report.json").read_text())
    assert not rep["accepted"] and not (out / "adapted_int8.onnx").is_file()
    ev = rep["gate"]["evidence"]
    assert ev["crops"] == rep["crops"]["gate"] < rep["config"]["gate_min_crops"] and "too little evidence" in rep["gate"]["reason"]
    assert rep["config"]["w_ref"] > 0 and rep["config"]["label_stride"] == 1
    assert rep["training"]["steps"] == 2 and rep["crops"]["train"] > 0 and rep["crops"]["gate"] > 0
    assert rep["scene"]["train"][0]["frames"] == [0, 32] and rep["scene"]["gate"][0]["frames"] == [32, 40]
    g = rep["gate"]
    assert 0 <= g["candidate"]["pck"] <= 100 and 0 <= g["current"]["pck"] <= 100
    meta = {p.key: p.value for p in onnx.load(str(out / "candidate_int8.onnx")).metadata_props}
    scene = json.loads(meta["edgepose.scene"])
    assert scene["name"] == "pose_1_test" and scene["train"][0]["file"] == "pose_1.mp4"
    assert "edgepose.quantization" in meta
    assert "Scene adaptation: pose_1_test" in (out / "adapt_report.md").read_text()
    assert "gate: candidate" in capsys.readouterr().out
    assert "too little evidence" in (out / "adapt_report.md").read_text()


@pytest.mark.torch
def test_adapt_from_a_server_collection(assets, tmp_path):
    """Crops as `edgepose serve --collect` keeps them: the newest 20 % gate, the rest train."""
    import cv2

    from edgepose.models._crop import Roi, crop
    from edgepose.server.collect import Collector
    from edgepose.video.sources import VideoFileSource

    col = Collector(tmp_path / "col")
    with VideoFileSource(str(assets / "data" / "tfjs_testdata" / "pose_1.mp4")) as src:
        for i, f in enumerate(src):
            if i == 20:
                break
            h, w = f.image.shape[:2]
            patch, _ = crop(f.image, Roi.full_frame(w, h), 192, 192)
            col.add("movenet-thunder-fp32", [patch], np.zeros((1, 17, 3), np.float32))
    assert len(col) == 20 and cv2 is not None
    out = tmp_path / "adapt"
    rc = main(["adapt", "--from-collection", str(tmp_path / "col"), "--out", str(out), "--steps", "1",
               "--batch-size", "4", "--cache", str(tmp_path / "cache"), "--threads", "2"])
    assert rc == 3  # 4 gate crops: too little evidence to replace the deployed model
    rep = json.loads((out / "adapt_report.json").read_text())
    assert rep["scene"]["train"] == [{"images": 16, "first": "0000000000.jpg", "last": "0000000015.jpg"}]
    assert rep["scene"]["gate"] == [{"images": 4, "first": "0000000016.jpg", "last": "0000000019.jpg"}]
    assert rep["crops"]["gate"] == 4 and rep["gate"]["candidate"]["crops"] == 4


@pytest.mark.backend
def test_quantize_scene_keeps_the_stem_float(assets, tmp_path):
    """``float_stem=2``: the first two body convolutions read float tensors, the third int8 ones."""
    import onnx

    from edgepose.compression.adapt.scene import quantize_scene

    fp32 = assets / "models" / "movenet" / "movenet_lightning_fp32.onnx"
    crops = [np.random.default_rng(i).integers(0, 255, (192, 192, 3), dtype=np.uint8) for i in range(2)]
    g = onnx.load(str(quantize_scene(fp32, tmp_path / "q.onnx", crops, num_calibration=2, float_stem=2))).graph
    made_by = {o: n.op_type for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"][:3]
    assert [made_by.get(c.input[1], "initializer") for c in convs] == ["initializer", "initializer", "DequantizeLinear"]
