"""The evaluation runner: rows, pooling, report formats, the CLI, and real models vs $EDGEPOSE_ASSETS/ASSETS.md."""

import json
import math

import numpy as np
import pytest

from edgepose.cli.main import main
from edgepose.eval.datasets import list_datasets, load_dataset
from edgepose.eval.runner import ALL, HARD_ROW, evaluate
from edgepose.models import load_model
from edgepose.models.base import Estimate, PoseModel

#: $EDGEPOSE_ASSETS/ASSETS.md reference PCK@0.2 x torso on ALL 161 people (GT-box crops).
REFERENCE_ALL = {
    "movenet-lightning-int8": 66.8, "movenet-lightning-fp32": 68.6, "movenet-thunder-fp32": 75.7,
    "blazepose-full": 56.5,
}
#: $EDGEPOSE_ASSETS/ASSETS.md reference per-set figures for Lightning int8 (a few people each: coarse).
#: These hold for the versions in constraints.txt (opencv-python-headless 5.0.0.93, ai-edge-litert
#: 2.3.0): the official int8 file is sensitive to the crop's resize. With OpenCV 5.1.0.95
#: posetrack18 scores 55.2, outside the tolerance (issue 17).
REFERENCE_INT8 = {"coco": 80.8, "posetrack18": 58.6}
HELD_FOR = {"opencv-python-headless": "5.0.0.93", "ai-edge-litert": "2.3.0"}
#: Points; the issue's acceptance tolerance on ALL. The float models reproduce their references
#: exactly with the protocol's crops; int8 and BlazePose depend on the runtime's kernels.
TOLERANCE_ALL = 1.5
#: Points; these two sets have ~150 labelled joints each, one joint moves the score ~0.7 points.
TOLERANCE_SET = 3.0


@pytest.fixture(scope="module")
def data_root(assets):
    return assets / "data"


class Oracle(PoseModel):
    """Answers each GT crop with that person's ground truth (finds the person by its ROI)."""

    name = "oracle"

    def __init__(self, people, shift=(0.0, 0.0)):
        super().__init__(backend=None)
        self.by_roi = {p.roi: p for p in people}
        self.shift = np.asarray(shift)
        self.calls = 0

    def estimate(self, frame, roi):
        self.calls += 1
        assert frame.ndim == 3 and frame.dtype == np.uint8
        kps = self.by_roi[roi].keypoints[:, :2] + self.shift
        return Estimate(kps.astype(np.float32), np.ones(17, np.float32), roi, 1.0)

    def backends(self):
        return []


@pytest.mark.core
def test_a_perfect_model_scores_100_everywhere_with_one_row_per_set_then_all_and_hard(data_root):
    sets = ["coco", "ochuman", "mpii", "h36m"]
    people = [p for s in sets for p in load_dataset(s, data_root)]
    oracle = Oracle(people)
    report = evaluate(oracle, datasets=sets, root=data_root, progress=False)
    assert [r.name for r in report.rows] == sets + [ALL, HARD_ROW]
    assert oracle.calls == len(people) == report.row(ALL).n_people == 26
    for r in report.rows:
        assert r.pck_torso == pytest.approx(100.0) and r.pck_bbox == pytest.approx(100.0)
    assert report.row("coco").oks_ap == pytest.approx(100.0)
    assert report.row("mpii").oks_ap is None  # not a COCO-17 set
    assert report.row(HARD_ROW).n_people == 5


@pytest.mark.core
def test_a_constant_offset_fails_exactly_the_joints_it_pushes_past_the_threshold(data_root):
    people = load_dataset("h36m", data_root)
    report = evaluate(Oracle(people, shift=(30.0, 0.0)), datasets="h36m", root=data_root,
                      progress=False)
    from edgepose.eval.metrics import torso_size

    torsos = np.array([torso_size(p.keypoints) for p in people])
    expected = 100.0 * (30.0 < 0.2 * torsos).mean()  # every h36m joint is labelled
    assert report.row("h36m").pck_torso == pytest.approx(expected)
    assert [r.name for r in report.rows] == ["h36m", ALL]  # no hard set ran: no HARD row


@pytest.mark.core
def test_report_serialises_to_json_and_formats_a_table(data_root):
    people = load_dataset("ochuman", data_root)
    report = evaluate(Oracle(people), datasets=["ochuman"], root=data_root, progress=False)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["model"] == "oracle" and d["protocol"]["pck_torso_alpha"] == 0.2
    assert [r["name"] for r in d["rows"]] == ["ochuman", ALL, HARD_ROW]
    assert d["rows"][0]["pck_torso"] == 100.0
    table = report.format_table()
    assert "PCK@0.2torso" in table and "ochuman" in table and "HARD" in table


@pytest.mark.backend
def test_lightning_int8_matches_the_per_set_reference_on_two_sets(data_root):
    with load_model("movenet-lightning-int8", num_threads=2) as model:
        report = evaluate(model, datasets=list(REFERENCE_INT8), root=data_root, progress=False)
    from importlib.metadata import version

    installed = {pkg: version(pkg) for pkg in HELD_FOR}
    for name, ref in REFERENCE_INT8.items():
        assert abs(report.row(name).pck_torso - ref) <= TOLERANCE_SET, \
            (name, report.row(name), f"reference holds for {HELD_FOR}; installed {installed}")
    assert 30.0 < report.row("coco").oks_ap <= 100.0


@pytest.mark.backend
def test_the_protocol_crops_reproduce_the_lightning_fp32_reference_to_the_decimal(data_root):
    with load_model("movenet-lightning-fp32", num_threads=2) as model:
        protocol = evaluate(model, root=data_root, progress=False)
        centre = evaluate(model, root=data_root, progress=False, crop="centre")
    assert protocol.row(ALL).n_people == 161
    assert protocol.row(ALL).pck_torso == pytest.approx(REFERENCE_ALL["movenet-lightning-fp32"], abs=0.05)
    assert protocol.to_dict()["protocol"]["crop_convention"] == "index"
    assert centre.to_dict()["protocol"]["crop_convention"] == "centre"
    # Half a pixel of crop shift moves this set by about a point: the convention is recorded.
    assert centre.row(ALL).pck_torso != protocol.row(ALL).pck_torso


@pytest.mark.core
def test_an_unknown_crop_convention_is_refused_before_any_work(data_root):
    from edgepose.errors import ConfigError

    with pytest.raises(ConfigError, match="crop convention 'pixel' is not one of centre, index"):
        evaluate(Oracle([]), datasets="coco", root=data_root, progress=False, crop="pixel")


@pytest.mark.backend
def test_eval_command_prints_rows_and_writes_json(data_root, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = main(["eval", "--model", "movenet-lightning-int8", "--datasets", "jhmdb,exlpose",
               "--data-root", str(data_root), "--json", str(out), "--threads", "2", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    for row in ("jhmdb", "exlpose", "ALL", "HARD"):
        assert row in printed
    d = json.loads(out.read_text())
    assert [r["name"] for r in d["rows"]] == ["exlpose", "jhmdb", ALL, HARD_ROW]  # report order


@pytest.mark.core
def test_eval_command_rejects_an_unknown_dataset_before_loading_a_model(data_root, capsys):
    rc = main(["eval", "--model", "no-such-model", "--datasets", "cocoo", "--data-root", str(data_root)])
    assert rc == 2
    assert "unknown dataset 'cocoo'; valid choices: aic, coco" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.backend
@pytest.mark.parametrize("name", sorted(n for n in REFERENCE_ALL if n.startswith("movenet")))
def test_full_evaluation_reproduces_the_reference_pck_on_all_161_people(name, data_root):
    with load_model(name, num_threads=2) as model:
        report = evaluate(model, root=data_root, progress=False)
    assert [r.name for r in report.rows] == list_datasets() + [ALL, HARD_ROW]
    row = report.row(ALL)
    assert row.n_people == 161
    assert abs(row.pck_torso - REFERENCE_ALL[name]) <= TOLERANCE_ALL, row
    assert not math.isnan(row.pck_bbox) and row.oks_ap is not None


@pytest.mark.slow
@pytest.mark.backend
def test_blazepose_full_without_heatmap_refinement_reproduces_the_reference(data_root):
    # The $EDGEPOSE_ASSETS/ASSETS.md BlazePose figures match landmarks taken without MediaPipe's heatmap
    # refinement; the card refines by default and then scores ~1-2 points higher on ALL.
    with load_model("blazepose-full", num_threads=2) as model:
        model.refine_heatmap = False
        row = evaluate(model, root=data_root, progress=False).row(ALL)
    assert abs(row.pck_torso - REFERENCE_ALL["blazepose-full"]) <= TOLERANCE_ALL, row
